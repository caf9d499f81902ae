//! A little-endian reader over a byte slice for the binary records on disk and in the
//! store (flush batches, sketches): damaged or truncated bytes are an error, never a panic.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("truncated at byte {at}: {wanted} more bytes wanted")]
    Truncated { at: usize, wanted: usize },
    #[error("invalid UTF-8 at byte {at}")]
    Utf8 { at: usize },
    #[error("{trailing} trailing bytes after byte {at}")]
    Trailing { at: usize, trailing: usize },
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let s = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(ReadError::Truncated { at: self.pos, wanted: n })?;
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(self.u64()? as i64)
    }

    pub fn str(&mut self, n: usize) -> Result<&'a str, ReadError> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| ReadError::Utf8 { at })
    }

    /// Fails unless every byte was read.
    pub fn end(&self) -> Result<(), ReadError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            trailing => Err(ReadError::Trailing { at: self.pos, trailing }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_damage() {
        let mut r = Reader::new(&[1, 2, 0, 3, 0, 0, 0, b'h', b'i', 0xff]);
        assert_eq!((r.u8(), r.u16(), r.u32(), r.str(2)), (Ok(1), Ok(2), Ok(3), Ok("hi")));
        assert_eq!(r.end(), Err(ReadError::Trailing { at: 9, trailing: 1 }));
        assert_eq!(r.str(1), Err(ReadError::Utf8 { at: 9 }));
        assert_eq!(r.u64(), Err(ReadError::Truncated { at: 10, wanted: 8 }));
        assert_eq!(Reader::new(&[]).take(usize::MAX), Err(ReadError::Truncated { at: 0, wanted: usize::MAX }));
    }
}
