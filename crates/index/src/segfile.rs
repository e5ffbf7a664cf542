//! Sealed-segment files: the ids, vectors and frozen graph of one
//! [`AnnIndex`], written once and never modified.
//!
//! # Why a sidecar file and not sled values
//!
//! The first version kept segments in sled as 1 MiB values. On
//! Fashion-MNIST (60,000 × 784 f32 = 188 MB of vectors, 8 MB of graph) the
//! collection took 557 MiB on disk: sled 0.34 splits leaves only past 16
//! entries, keeps values inline in its pages, and rewrites whole pages (8-9 MiB
//! each here) when it consolidates them, so every large value was on disk two
//! to three times until its segment cleaner caught up (sled issues #1124,
//! #1484). A segment is immutable and large: the natural store for it is one
//! file written sequentially, fsynced, and then *named by the sled manifest*
//! with its length and checksum. The manifest still decides what is valid:
//! a file it does not name is a leftover and is deleted on open; a named file
//! whose length or checksum differs is reported as corruption.
//!
//! # Format (little-endian)
//!
//! `"IMGSEG01"`, rows `u64`, dim `u64`, graph length `u64`, then the ids
//! (`rows` × u64), the vectors (`rows × dim` × f32), the encoded graph, and
//! finally a CRC-32 of everything before it.
//!
//! # Quantized segments
//!
//! A quantized collection's segment has the same file. On open its vectors
//! are checked while streaming through the file (checksum, finiteness) but
//! not kept: the index memory-maps them instead (offset `32 + 8 × rows`,
//! 4-aligned), and keeps only its codes in heap memory.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imgsim_common::storage::{is_temp, is_temp_of};
use imgsim_common::Storage;

use crate::distance::Metric;
use crate::error::{IndexError, Result};
use crate::hnsw::{AnnIndex, HnswParams};
use crate::quant::Quantization;
use crate::vectors::{MappedRows, VectorSet};

#[cfg(target_endian = "big")]
compile_error!("segment files are written in the host's byte order, which must be little-endian");

const MAGIC: &[u8; 8] = b"IMGSEG01";
const HEADER: usize = 8 + 3 * 8;

/// The file name of segment `id` inside the collection's `segments/` folder.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// What the manifest records about a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) crc32: u32,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |e| {
        IndexError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    }
}

/// Writes `idx` to `dir/<file_name(id)>` through `storage` (temporary
/// name, fsync, rename, folder fsync: the final name only ever holds a
/// complete file), creating `dir` if it is missing. A quantized index then
/// trades its heap copy of the vectors for a map of the file.
pub(crate) fn write(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
    idx: &mut AnnIndex,
) -> Result<Written> {
    storage.create_dir_all(dir)?;
    let path = dir.join(file_name(id));
    let mut written = None;
    storage.write_with(&path, &mut |w| {
        written = Some(write_to(w, idx)?);
        Ok(())
    })?;
    let written = written.ok_or_else(|| {
        IndexError::Io(std::io::Error::other(format!(
            "{}: the storage did not write the segment",
            path.display()
        )))
    })?;
    if idx.params().quantization != Quantization::None && !idx.is_empty() {
        idx.map_vectors(map_vectors(&path, idx.len(), idx.dim())?);
    }
    Ok(written)
}

/// Memory-maps the vectors of the segment file at `path` (`rows` × `dim`),
/// advising the kernel that reads will be random (rescoring reads a few
/// rows per query: read-ahead would only fill memory).
fn map_vectors(path: &Path, rows: usize, dim: usize) -> Result<MappedRows> {
    let file = File::open(path).map_err(io_at(path))?;
    // SAFETY: segment files are immutable: written once under a temporary
    // name, renamed, never modified or truncated afterwards (a replaced
    // segment's file is unlinked, which leaves existing maps intact).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_at(path))?;
    // Only advice: a kernel that ignores it is still correct.
    let _ = map.advise(memmap2::Advice::Random);
    MappedRows::new(Arc::new(map), HEADER + rows * 8, rows * dim).ok_or_else(|| {
        IndexError::Corrupt(format!(
            "segment file {}: too short to hold {rows} × {dim} vectors",
            path.display()
        ))
    })
}

/// Writes the file's bytes to `w`; returns their length and checksum.
fn write_to(w: &mut dyn Write, idx: &AnnIndex) -> std::io::Result<Written> {
    let mut w = CrcWriter {
        inner: w,
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    let set = idx.vectors();
    let graph = idx.encode_graph();
    w.write_all(MAGIC)?;
    for v in [set.len() as u64, set.dim() as u64, graph.len() as u64] {
        w.write_all(&v.to_le_bytes())?;
    }
    w.write_all(bytemuck::cast_slice(set.ids()))?;
    w.write_all(bytemuck::cast_slice(set.data()))?;
    w.write_all(&graph)?;
    let crc = w.crc.clone().finalize();
    w.write_all(&crc.to_le_bytes())?;
    Ok(Written {
        bytes: w.bytes,
        crc32: crc,
    })
}

/// Reads a segment file into an index, checking its length and checksum
/// against what the manifest recorded. Vectors are read straight into their
/// final buffer (one copy).
pub(crate) fn read(
    path: &Path,
    expect: Written,
    rows: usize,
    dim: usize,
    metric: Metric,
    params: HnswParams,
) -> Result<AnnIndex> {
    let corrupt =
        |what: String| IndexError::Corrupt(format!("segment file {}: {what}", path.display()));
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            corrupt("missing".into())
        } else {
            io_at(path)(e)
        }
    })?;
    let len = file.metadata().map_err(io_at(path))?.len();
    if len != expect.bytes {
        return Err(corrupt(format!(
            "{len} bytes, the manifest recorded {}",
            expect.bytes
        )));
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut read_exact = |buf: &mut [u8]| -> Result<()> {
        r.read_exact(buf)
            .map_err(|e| corrupt(format!("truncated ({e})")))?;
        crc.update(buf);
        Ok(())
    };
    let mut header = [0u8; HEADER];
    read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    let field =
        |i: usize| u64::from_le_bytes(header[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
    let (f_rows, f_dim, graph_len) = (field(0) as usize, field(1) as usize, field(2) as usize);
    if f_rows != rows || f_dim != dim {
        return Err(corrupt(format!(
            "holds {f_rows} × {f_dim}, the manifest expects {rows} × {dim}"
        )));
    }
    let body = (rows as u64)
        .checked_mul(8 + 4 * dim as u64)
        .and_then(|b| b.checked_add(HEADER as u64 + graph_len as u64 + 4));
    if body != Some(len) {
        return Err(corrupt(
            "section sizes do not add up to the file length".into(),
        ));
    }
    let mut ids = vec![0u64; rows];
    read_exact(bytemuck::cast_slice_mut(&mut ids))?;
    let non_finite = || corrupt("non-finite vector component".into());
    let data = if params.quantization == Quantization::None {
        let mut data = vec![0f32; rows * dim];
        read_exact(bytemuck::cast_slice_mut(&mut data))?;
        if data.iter().any(|x| !x.is_finite()) {
            return Err(non_finite());
        }
        Some(data)
    } else {
        // Checked in 1 MiB pieces and not kept: the index maps them.
        let mut piece = vec![0f32; (rows * dim).clamp(1, 1 << 18)];
        let mut left = rows * dim;
        while left > 0 {
            let n = left.min(piece.len());
            read_exact(bytemuck::cast_slice_mut(&mut piece[..n]))?;
            if piece[..n].iter().any(|x| !x.is_finite()) {
                return Err(non_finite());
            }
            left -= n;
        }
        None
    };
    let mut graph = vec![0u8; graph_len];
    read_exact(&mut graph)?;
    let computed = crc.finalize();
    let mut tail = [0u8; 4];
    r.read_exact(&mut tail)
        .map_err(|e| corrupt(format!("truncated ({e})")))?;
    let stored = u32::from_le_bytes(tail);
    if computed != stored || stored != expect.crc32 {
        return Err(corrupt(format!(
            "checksum mismatch (file {stored:08x}, contents {computed:08x}, manifest {:08x})",
            expect.crc32
        )));
    }
    let set = match data {
        Some(data) => VectorSet::from_prepared(dim, ids, data),
        None => VectorSet::from_mapped(dim, ids, map_vectors(path, rows, dim)?),
    };
    AnnIndex::from_parts(metric, params, set, &graph)
}

/// True for names this module writes that are plain files: segment files
/// (`*.seg`) and the temporaries their writes leave when interrupted, both
/// the storage seam's (`<name>.seg.<pid>-<n>.tmp`, see
/// [`imgsim_common::storage::temp_path`]) and older builds' (`<name>.seg.tmp`).
/// These are the only entries `open` may delete as leftovers.
pub(crate) fn is_ours(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let segment = name.ends_with(".seg");
    let temporary = is_temp(path)
        && name
            .find(".seg.")
            .is_some_and(|i| is_temp_of(path, &path.with_file_name(&name[..i + 4])));
    (segment || temporary) && path.is_file()
}

/// Segment files in `dir` (and leftover temporaries), with their ids when the
/// name parses.
pub(crate) fn list(dir: &Path) -> Result<Vec<(PathBuf, Option<u64>)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_suffix(".seg")
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        out.push((e.path(), id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgsim_common::storage::temp_path;

    #[test]
    fn leftovers_of_segment_writes_are_recognised_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(file_name(3));
        let ours = [
            seg.clone(),
            temp_path(&seg),
            dir.path().join(format!("{}.tmp", file_name(4))),
        ];
        let foreign = [
            dir.path().join("notes.tmp"),
            dir.path().join("README.txt"),
            dir.path().join("0003.segment.tmp"),
        ];
        for p in ours.iter().chain(&foreign) {
            std::fs::write(p, b"x").unwrap();
        }
        for p in &ours {
            assert!(is_ours(p), "{}", p.display());
        }
        for p in &foreign {
            assert!(!is_ours(p), "{}", p.display());
        }
        let folder = dir.path().join(format!("{}.seg", "00ff"));
        std::fs::create_dir(&folder).unwrap();
        assert!(!is_ours(&folder), "folders are never ours");
    }
}
