//! A frame buffer with headroom, so encapsulation prepends headers in place
//! instead of copying the frame. Callers keep a pool of these and reuse them:
//! the fast path never allocates.

/// Bytes kept free in front of the frame: enough for Geneve with options.
pub const HEADROOM: usize = 128;

/// One frame and the room in front of it. The vector stays initialised to
/// its full length, so readers can fill it in place ([`PacketBuf::spare`])
/// without zeroing it again for every frame.
#[derive(Debug, Clone)]
pub struct PacketBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::with_capacity(2048)
    }
}

impl PacketBuf {
    /// An empty buffer able to hold frames of `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        PacketBuf {
            buf: vec![0; HEADROOM + capacity],
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `frame`.
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut b = Self::with_capacity(frame.len());
        b.set(frame);
        b
    }

    /// Replaces the contents with `frame`, restoring the headroom. Allocates
    /// only if `frame` is larger than any frame this buffer held before.
    pub fn set(&mut self, frame: &[u8]) {
        self.spare(frame.len()).copy_from_slice(frame);
        self.set_len(frame.len());
    }

    /// Room for a frame of up to `max` bytes after the headroom, for a
    /// reader to fill in place; then [`PacketBuf::set_len`] says how much
    /// it wrote. Allocates only the first time a buffer needs `max`.
    pub fn spare(&mut self, max: usize) -> &mut [u8] {
        if self.buf.len() < HEADROOM + max {
            self.buf.resize(HEADROOM + max, 0);
        }
        self.start = HEADROOM;
        self.end = HEADROOM;
        &mut self.buf[HEADROOM..HEADROOM + max]
    }

    /// The frame is the first `len` bytes after the headroom (clamped to
    /// what the buffer holds).
    pub fn set_len(&mut self, len: usize) {
        self.start = HEADROOM;
        self.end = (HEADROOM + len).min(self.buf.len());
    }

    /// Drops bytes from the end of the frame, keeping `len`.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.end.min(self.start + len);
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the frame at the front by `header.len()` bytes holding `header`.
    /// Returns false (and changes nothing) if the headroom is too small.
    #[inline]
    pub fn push_front(&mut self, header: &[u8]) -> bool {
        let Some(start) = self.start.checked_sub(header.len()) else {
            return false;
        };
        self.buf[start..self.start].copy_from_slice(header);
        self.start = start;
        true
    }

    /// Takes back `n` bytes a [`PacketBuf::pop_front`] dropped: the header
    /// is still in the headroom, untouched if nothing was pushed since (a
    /// packet forwarded as it came, after a look inside). False (and no
    /// change) if there are not `n` bytes in front.
    #[inline]
    pub fn unpop_front(&mut self, n: usize) -> bool {
        let Some(start) = self.start.checked_sub(n) else {
            return false;
        };
        self.start = start;
        true
    }

    /// Drops `n` bytes from the front (a decapsulated header).
    #[inline]
    pub fn pop_front(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pop() {
        let mut b = PacketBuf::from_frame(b"inner");
        assert!(b.push_front(b"hdr:"));
        assert_eq!(b.data(), b"hdr:inner");
        assert!(b.pop_front(4));
        assert_eq!(b.data(), b"inner");
        assert!(!b.pop_front(6));
        assert!(!b.push_front(&[0u8; HEADROOM + 1]));
        assert_eq!(b.data(), b"inner");
        b.set(b"x");
        assert_eq!(b.len(), 1);
        let room = b.spare(100);
        assert_eq!(room.len(), 100);
        room[..3].copy_from_slice(b"abc");
        b.set_len(3);
        assert_eq!(b.data(), b"abc");
        b.truncate(2);
        assert_eq!(b.data(), b"ab");
    }
}
