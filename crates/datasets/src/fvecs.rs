//! TEXMEX `.fvecs` (and `.ivecs`): each vector is a little-endian `i32`
//! dimension followed by that many `f32` (or `i32`) values.

use std::path::Path;

use crate::{DatasetError, Dense, Result};

fn read_records(path: &Path) -> Result<(usize, Vec<[u8; 4]>)> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    records(&bytes, path)
}

fn records(bytes: &[u8], path: &Path) -> Result<(usize, Vec<[u8; 4]>)> {
    if bytes.is_empty() {
        return Ok((0, Vec::new()));
    }
    if bytes.len() < 4 {
        return Err(DatasetError::format(
            path,
            "truncated: shorter than one dimension header",
        ));
    }
    let dim = i32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if dim <= 0 || dim > 1 << 20 {
        return Err(DatasetError::format(
            path,
            format!("implausible dimension {dim}"),
        ));
    }
    let dim = dim as usize;
    let rec = 4 * (dim + 1);
    if !bytes.len().is_multiple_of(rec) {
        return Err(DatasetError::format(
            path,
            format!(
                "{} bytes is not a whole number of {dim}-d records ({rec} bytes each): truncated or mixed dimensions",
                bytes.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / rec * dim);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let d = i32::from_le_bytes(r[0..4].try_into().expect("4 bytes"));
        if d as usize != dim {
            return Err(DatasetError::format(
                path,
                format!("vector {i} has dimension {d}, the first had {dim}"),
            ));
        }
        out.extend(r[4..].chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
    }
    Ok((dim, out))
}

/// Reads an `.fvecs` file.
pub fn read_fvecs(path: &Path) -> Result<Dense> {
    fvecs_from(read_records(path)?, path)
}

/// Parses `.fvecs` data already in memory; `path` names it in errors.
pub fn parse_fvecs(bytes: &[u8], path: &Path) -> Result<Dense> {
    fvecs_from(records(bytes, path)?, path)
}

fn fvecs_from((dim, raw): (usize, Vec<[u8; 4]>), path: &Path) -> Result<Dense> {
    if dim == 0 {
        return Err(DatasetError::format(path, "empty file"));
    }
    Ok(Dense {
        dim,
        data: raw.into_iter().map(f32::from_le_bytes).collect(),
    })
}

/// Reads an `.ivecs` file (e.g. ground-truth neighbour ids) as rows of `u32`.
pub fn read_ivecs(path: &Path) -> Result<(usize, Vec<u32>)> {
    let (dim, raw) = read_records(path)?;
    Ok((dim, raw.into_iter().map(u32::from_le_bytes).collect()))
}

/// Writes vectors as `.fvecs` (whole or not at all, through the storage seam).
pub fn write_fvecs(path: &Path, m: &Dense) -> Result<()> {
    use imgsim_common::Storage;
    imgsim_common::LocalFs
        .write_with(path, &mut |f| {
            for r in 0..m.rows() {
                f.write_all(&(m.dim as i32).to_le_bytes())?;
                for x in m.row(r) {
                    f.write_all(&x.to_le_bytes())?;
                }
            }
            Ok(())
        })
        .map_err(|e| DatasetError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.fvecs");
        let m = Dense {
            dim: 3,
            data: vec![1., 2., 3., 4., 5., 6.5],
        };
        write_fvecs(&p, &m).unwrap();
        assert_eq!(read_fvecs(&p).unwrap(), m);
        assert_eq!(crate::read_vectors(&p).unwrap(), m);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(matches!(read_fvecs(&p), Err(DatasetError::Format { .. })));
        let mut bad = bytes.clone();
        bad[16..20].copy_from_slice(&2i32.to_le_bytes()); // second record claims dim 2
        std::fs::write(&p, &bad).unwrap();
        assert!(read_fvecs(&p).is_err());
        std::fs::write(&p, (-5i32).to_le_bytes()).unwrap();
        assert!(read_fvecs(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(read_fvecs(&p).is_err());
    }
}
