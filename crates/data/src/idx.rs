//! The IDX file format of MNIST and Fashion-MNIST, plain or gzipped.
//!
//! An IDX file is a 4-byte magic number `00 00 TT DD` (`TT` the element type, `DD` the number of
//! dimensions), `DD` big-endian `u32` sizes, then the elements in row-major order. Only unsigned
//! bytes (`TT = 0x08`) are read here, which is what (Fashion-)MNIST uses.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The IDX type code of unsigned bytes.
const UBYTE: u8 = 0x08;

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes of the dimensions.
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Images read from an IDX file of three dimensions `[count, rows, cols]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// The number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// The pixels, `rows * cols` per image, row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i`.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }
}

/// Reads the bytes of a file, un-gzipping them when they start with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let io = |source| DataError::Io { path: path.into(), source };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads an IDX file of unsigned bytes, gzipped or not (told apart by the gzip magic, not by the
/// file name).
///
/// Fails with [`DataError::BadMagic`] when the magic number is not `00 00 08 DD` with `DD` at
/// least 1, [`DataError::Truncated`] when the file is shorter than its header says, and
/// [`DataError::Format`] when it is longer. Every error names the file.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let mut bytes = read_maybe_gz(path)?;
    let header = check_idx(&bytes, path)?;
    let data = bytes.split_off(header.len);
    Ok(IdxArray { dims: header.dims, data })
}

/// Parses the bytes of an (un-gzipped) IDX file of unsigned bytes; `path` only names the source
/// in errors. See [`read_idx`].
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let header = check_idx(bytes, path)?;
    Ok(IdxArray { data: bytes[header.len..].to_vec(), dims: header.dims })
}

/// The header of a checked IDX file.
struct IdxHeader {
    /// The sizes of the dimensions.
    dims: Vec<usize>,
    /// The length of the header in bytes; the data follow it to the end of the file.
    len: usize,
}

/// Checks the magic number, the header and the file length against the dimensions.
fn check_idx(bytes: &[u8], path: &Path) -> Result<IdxHeader> {
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "header",
            expected: 4,
            found: bytes.len(),
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let bad_magic =
        |reason: String| DataError::BadMagic { path: path.into(), found: magic, reason };
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad_magic("an IDX file starts with two zero bytes".into()));
    }
    if bytes[2] != UBYTE {
        return Err(bad_magic(format!(
            "element type 0x{:02x} is not supported, only unsigned bytes (0x08)",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(bad_magic("the number of dimensions is 0".into()));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "header",
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let size = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        DataError::Format { path: path.into(), message: format!("dimensions {dims:?} overflow") }
    })?;
    let expected = header.checked_add(size).ok_or_else(|| DataError::Format {
        path: path.into(),
        message: format!("dimensions {dims:?} overflow"),
    })?;
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "data",
            expected: size,
            found: bytes.len() - header,
        });
    }
    if bytes.len() > expected {
        return Err(DataError::Format {
            path: path.into(),
            message: format!(
                "{} bytes after the {size} bytes of data that dimensions {dims:?} announce",
                bytes.len() - expected
            ),
        });
    }
    Ok(IdxHeader { dims, len: header })
}

/// Reads an IDX file of images, `[count, rows, cols]` unsigned bytes. Fails as [`read_idx`]
/// does, and with [`DataError::Format`] when the file does not have three dimensions.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let array = read_idx(path)?;
    match array.dims[..] {
        [count, rows, cols] => Ok(IdxImages { count, rows, cols, pixels: array.data }),
        _ => Err(DataError::Format {
            path: path.into(),
            message: format!("expected images of 3 dimensions, found dimensions {:?}", array.dims),
        }),
    }
}

/// Reads an IDX file of labels, one unsigned byte per sample. Fails as [`read_idx`] does, and
/// with [`DataError::Format`] when the file does not have one dimension.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let array = read_idx(path)?;
    if array.dims.len() != 1 {
        return Err(DataError::Format {
            path: path.into(),
            message: format!("expected labels of 1 dimension, found dimensions {:?}", array.dims),
        });
    }
    Ok(array.data)
}

/// Writes an IDX file of unsigned bytes, gzipped when `gzip` is true.
///
/// Fails with [`DataError::Config`] when `data.len()` is not the product of `dims` or there are
/// no or more than 255 dimensions, and with [`DataError::Io`] when the file cannot be written.
pub fn write_idx(path: impl AsRef<Path>, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    if dims.is_empty() || dims.len() > 255 || dims.iter().product::<usize>() != data.len() {
        return Err(DataError::Config(format!(
            "cannot write {}: {} bytes do not fill dimensions {dims:?}",
            path.display(),
            data.len()
        )));
    }
    let mut bytes = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DataError::Config(format!("cannot write {}: dimension {d} exceeds u32", path.display()))
        })?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let io = |source| DataError::Io { path: PathBuf::from(path), source };
    if gzip {
        let file = std::fs::File::create(path).map_err(io)?;
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        encoder.write_all(&bytes).map_err(io)?;
        encoder.finish().map_err(io)?;
        Ok(())
    } else {
        std::fs::write(path, bytes).map_err(io)
    }
}

/// Finds the IDX file `stem` in `dir`: `stem`, `stem.gz`, or the same with a dot before `idx`
/// (`train-images.idx3-ubyte`, as some copies of MNIST name them), in that order.
pub(crate) fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let candidates =
        [stem.to_string(), format!("{stem}.gz"), dotted.clone(), format!("{dotted}.gz")];
    if let Some(found) = candidates.iter().map(|name| dir.join(name)).find(|path| path.is_file()) {
        return Ok(found);
    }
    if let Some(folder) = candidates.iter().map(|name| dir.join(name)).find(|path| path.is_dir()) {
        return Err(DataError::Format {
            path: folder,
            message: "is a folder, not an IDX file".into(),
        });
    }
    Err(DataError::Io {
        path: dir.join(stem),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no such file, nor {stem}.gz, {dotted} or {dotted}.gz in that folder"),
        ),
    })
}
