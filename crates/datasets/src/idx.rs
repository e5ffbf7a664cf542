//! The IDX format of (Fashion-)MNIST, optionally gzip-compressed.
//!
//! Header: two zero bytes, a type code (0x08 = unsigned byte), the number of
//! dimensions, then one big-endian `u32` per dimension; the data follow.

use std::io::Read;
use std::path::Path;

use crate::{DatasetError, Dense, Result};

/// Largest decompressed file accepted (guards against a gzip bomb).
const MAX_BYTES: u64 = 2 << 30;

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut out = Vec::new();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let res = if gz {
        flate2::read::GzDecoder::new(file)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
    } else {
        file.take(MAX_BYTES + 1).read_to_end(&mut out)
    };
    res.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::InvalidInput
        | std::io::ErrorKind::InvalidData => {
            DatasetError::format(path, format!("corrupt or truncated gzip data: {e}"))
        }
        _ => DatasetError::io(path, e),
    })?;
    if out.len() as u64 > MAX_BYTES {
        return Err(DatasetError::format(
            path,
            "file larger than 2 GiB once decompressed",
        ));
    }
    Ok(out)
}

/// Parses an IDX header; returns the dimensions and the data offset.
fn header(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        return Err(DatasetError::format(path, "too short for an IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DatasetError::format(path, "not an IDX file (bad magic)"));
    }
    if bytes[2] != 0x08 {
        return Err(DatasetError::format(
            path,
            format!("IDX element type 0x{:02x} is not unsigned byte", bytes[2]),
        ));
    }
    let nd = bytes[3] as usize;
    let off = 4 + 4 * nd;
    if nd == 0 || bytes.len() < off {
        return Err(DatasetError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DatasetError::format(path, "IDX dimensions overflow"))?;
    let have = bytes.len() - off;
    if have != want {
        return Err(DatasetError::format(
            path,
            format!(
                "IDX header promises {want} bytes of data, file has {have} (truncated or corrupt)"
            ),
        ));
    }
    Ok((dims, off))
}

/// Reads an IDX image file (`n × rows × cols` bytes) as `n` vectors of
/// `rows*cols` floats holding the raw pixel values 0..=255.
pub fn read_images(path: &Path) -> Result<Dense> {
    parse_images(&read_all(path)?, path)
}

/// Parses IDX image data already in memory (decompressed); `path` names it
/// in errors.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Dense> {
    let (dims, off) = header(path, bytes)?;
    if dims.len() < 2 {
        return Err(DatasetError::format(
            path,
            "an image file needs at least 2 dimensions",
        ));
    }
    let dim: usize = dims[1..].iter().product();
    if dim == 0 {
        return Err(DatasetError::format(path, "images have zero pixels"));
    }
    Ok(Dense {
        dim,
        data: bytes[off..].iter().map(|&b| f32::from(b)).collect(),
    })
}

/// Reads an IDX label file (`n` bytes).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_all(path)?, path)
}

/// Parses IDX label data already in memory (decompressed); `path` names it
/// in errors.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let (dims, off) = header(path, bytes)?;
    if dims.len() != 1 {
        return Err(DatasetError::format(
            path,
            "a label file has exactly 1 dimension",
        ));
    }
    Ok(bytes[off..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_plain_and_gzip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_bytes(&[2, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]);
        let plain = dir.path().join("x-idx3-ubyte");
        std::fs::write(&plain, &raw).unwrap();
        let d = read_images(&plain).unwrap();
        assert_eq!((d.rows(), d.dim), (2, 6));
        assert_eq!(d.row(1), &[6., 7., 8., 9., 10., 255.]);

        let gz = dir.path().join("x-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).unwrap();
        let gzb = enc.finish().unwrap();
        std::fs::write(&gz, &gzb).unwrap();
        assert_eq!(read_images(&gz).unwrap(), d);

        // Truncated data, truncated gzip, bad magic, wrong type, labels.
        std::fs::write(&plain, &raw[..raw.len() - 1]).unwrap();
        assert!(matches!(
            read_images(&plain),
            Err(DatasetError::Format { .. })
        ));
        std::fs::write(&gz, &gzb[..gzb.len() / 2]).unwrap();
        assert!(matches!(read_images(&gz), Err(DatasetError::Format { .. })));
        std::fs::write(&plain, b"\x01\x02\x08\x01").unwrap();
        assert!(matches!(
            read_images(&plain),
            Err(DatasetError::Format { .. })
        ));
        std::fs::write(&plain, idx_bytes(&[1], &[3])).unwrap();
        assert!(read_images(&plain).is_err());
        assert_eq!(read_labels(&plain).unwrap(), vec![3]);
        std::fs::write(&plain, b"").unwrap();
        assert!(read_labels(&plain).is_err());
        assert!(matches!(
            read_images(&dir.path().join("absent")),
            Err(DatasetError::Missing { .. })
        ));
    }
}
