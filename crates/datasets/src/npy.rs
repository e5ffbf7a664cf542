//! NumPy `.npy` files holding a 2-D array (C order) of `f32`, `f64`, `u8`,
//! `i32` or `i64`, converted to `f32`.

use std::path::Path;

use crate::{DatasetError, Dense, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Pulls the value of `'key':` out of the header dict (a tiny, strict parser
/// for the three keys NumPy writes).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(stripped) = rest.strip_prefix('\'') {
        stripped.find('\'')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Reads a 2-D `.npy` array as f32 vectors (one per row).
pub fn read_npy(path: &Path) -> Result<Dense> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    parse_npy(&bytes, path)
}

/// Parses `.npy` data already in memory; `path` names it in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Dense> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(DatasetError::format(path, "not a .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        _ => {
            return Err(DatasetError::format(
                path,
                format!("unsupported .npy version {major}"),
            ))
        }
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| DatasetError::format(path, "truncated or non-text .npy header"))?;
    let descr =
        field(header, "descr").ok_or_else(|| DatasetError::format(path, "header has no descr"))?;
    let fortran = field(header, "fortran_order")
        .ok_or_else(|| DatasetError::format(path, "header has no fortran_order"))?;
    let shape =
        field(header, "shape").ok_or_else(|| DatasetError::format(path, "header has no shape"))?;
    if fortran != "False" {
        return Err(DatasetError::format(
            path,
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| DatasetError::format(path, format!("bad shape {shape}")))?;
    if dims.len() != 2 || dims[1] == 0 {
        return Err(DatasetError::format(
            path,
            format!("expected a 2-D array (rows, dim), found shape {shape}"),
        ));
    }
    let (rows, dim) = (dims[0], dims[1]);
    let descr = descr.trim_matches('\'');
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|u1" | "<u1" => 1,
        other => {
            return Err(DatasetError::format(
                path,
                format!(
                "unsupported dtype {other} (use little-endian float32/float64/uint8/int32/int64)"
            ),
            ))
        }
    };
    let data = &bytes[hstart + hlen..];
    let want = rows
        .checked_mul(dim)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| DatasetError::format(path, "shape overflows"))?;
    if data.len() != want {
        return Err(DatasetError::format(
            path,
            format!(
                "shape {shape} needs {want} data bytes, file has {} (truncated?)",
                data.len()
            ),
        ));
    }
    let out: Vec<f32> = match descr {
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect(),
        "<i4" => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f32)
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect(),
        "<i8" => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect(),
        _ => data.iter().map(|&b| f32::from(b)).collect(),
    };
    Ok(Dense { dim, data: out })
}

/// Writes vectors as a version-1 `.npy` of `<f4`.
pub fn write_npy(path: &Path, m: &Dense) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.rows(),
        m.dim
    );
    // Pad so that the data start is 64-byte aligned, ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * m.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in &m.data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    imgsim_common::Storage::write(&imgsim_common::LocalFs, path, &out)
        .map_err(|e| DatasetError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let m = Dense {
            dim: 2,
            data: vec![1., 2., 3., -4.5],
        };
        write_npy(&p, &m).unwrap();
        assert_eq!(read_npy(&p).unwrap(), m);
        assert_eq!(crate::read_vectors(&p).unwrap(), m);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 16) % 64, 0, "data aligned");
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(read_npy(&p), Err(DatasetError::Format { .. })));
        std::fs::write(&p, b"\x93NUMPY").unwrap();
        assert!(read_npy(&p).is_err());
        let text = String::from_utf8_lossy(&bytes[10..bytes.len() - 16]).replace("<f4", ">f4");
        let mut be = bytes[..10].to_vec();
        be.extend_from_slice(text.as_bytes());
        be.extend_from_slice(&bytes[bytes.len() - 16..]);
        std::fs::write(&p, &be).unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("dtype"));
    }
}
