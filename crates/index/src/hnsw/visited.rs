//! Which rows a graph search has reached: one `u32` mark per row, tagged
//! with the search's epoch, so that a new search starts without clearing.

/// An epoch-tagged visited set over rows `0..n`, reused across searches.
#[derive(Default)]
pub(super) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    /// An empty set (usable in a `const` thread-local).
    pub(super) const fn new() -> Visited {
        Visited {
            marks: Vec::new(),
            epoch: 0,
        }
    }

    /// Starts a new search over rows `0..n`: every row unvisited.
    pub(super) fn begin(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: marks of 4 billion searches ago would read as visited.
            self.marks.iter_mut().for_each(|v| *v = 0);
            self.epoch = 1;
        }
    }

    /// Marks `row` visited; false when this search had already reached it.
    #[inline]
    pub(super) fn first_visit(&mut self, row: u32) -> bool {
        let mark = &mut self.marks[row as usize];
        if *mark == self.epoch {
            return false;
        }
        *mark = self.epoch;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_search_sees_each_row_once_even_across_the_epoch_wrap() {
        let mut v = Visited::new();
        v.begin(4);
        assert!(v.first_visit(2) && !v.first_visit(2) && v.first_visit(3));
        v.begin(6);
        assert!(v.first_visit(2) && v.first_visit(5) && !v.first_visit(5));
        v.epoch = u32::MAX;
        v.marks[1] = 1;
        v.begin(6);
        assert_eq!(v.epoch, 1);
        assert!(v.first_visit(1) && !v.first_visit(1));
    }
}
