//! ESP (RFC 4303) in tunnel mode: one security association each way, each
//! sealing or opening whole inner IP packets. The transforms AWS's tunnels
//! offer in phase 2 (spec 10.2): AES-GCM with a 16-byte ICV (RFC 4106),
//! and AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404) or
//! HMAC-SHA-256-128, -384-192 or -512-256 (RFC 4868); 32-bit sequence numbers (no ESN) and a 1,024-packet replay
//! window.
//!
//! Sans-IO and allocation-free once the caller's buffer has grown: bytes
//! in, bytes out. Every refused packet is a counted [`EspDrop`]; nothing
//! derived from a packet can panic.

use core::ops::Range;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use crate::cipher::{AES_BLOCK, Aes, Gcm, ICV_GCM};
use crate::replay::{Replay, ReplayWindow};

/// SPI and sequence number.
const HEADER: usize = 8;
/// RFC 4106's explicit IV.
const GCM_IV: usize = 8;
/// RFC 4106 §8.1: the last 4 bytes of the key material.
const GCM_SALT: usize = 4;
/// Next header: an IPv4 packet, an IPv6 packet, and "no next header"
/// (RFC 4303 §2.6: a dummy packet, dropped on arrival).
pub const IPV4: u8 = 4;
pub const IPV6: u8 = 41;
pub const NO_NEXT_HEADER: u8 = 59;

/// The integrity half of an AES-CBC transform (IKEv2 transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// AUTH_HMAC_SHA1_96 (2): AWS's downloadable configurations' default.
    Sha1,
    /// AUTH_HMAC_SHA2_256_128 (12).
    Sha256,
    /// AUTH_HMAC_SHA2_384_192 (13).
    Sha384,
    /// AUTH_HMAC_SHA2_512_256 (14).
    Sha512,
}

impl Integrity {
    /// The HMAC key's length.
    pub fn key_len(self) -> usize {
        match self {
            Integrity::Sha1 => 20,
            Integrity::Sha256 => 32,
            Integrity::Sha384 => 48,
            Integrity::Sha512 => 64,
        }
    }

    /// The truncated ICV's length: half the hash (96 bits for SHA-1).
    pub fn icv_len(self) -> usize {
        match self {
            Integrity::Sha1 => 12,
            other => other.key_len() / 2,
        }
    }
}

/// An SA's transform: the cipher, its key length, and for CBC its
/// integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    /// ENCR_AES_GCM_16 (20) with a 128- or 256-bit key.
    AesGcm16 { key_bits: u16 },
    /// ENCR_AES_CBC (12) with a 128- or 256-bit key, and an HMAC.
    AesCbc { key_bits: u16, integrity: Integrity },
}

impl Transform {
    /// How many bytes of key material one direction takes (RFC 7296
    /// §2.17: the encryption key, then the integrity key; GCM's salt is
    /// part of its encryption key).
    pub fn keymat_len(self) -> usize {
        match self {
            Transform::AesGcm16 { key_bits } => usize::from(key_bits / 8) + GCM_SALT,
            Transform::AesCbc {
                key_bits,
                integrity,
            } => usize::from(key_bits / 8) + integrity.key_len(),
        }
    }

    fn iv_len(self) -> usize {
        match self {
            Transform::AesGcm16 { .. } => GCM_IV,
            Transform::AesCbc { .. } => AES_BLOCK,
        }
    }

    fn icv_len(self) -> usize {
        match self {
            Transform::AesGcm16 { .. } => ICV_GCM,
            Transform::AesCbc { integrity, .. } => integrity.icv_len(),
        }
    }

    /// What the ciphertext's length must be a multiple of (RFC 4303
    /// §2.4: at least 4, so the trailer ends on a 32-bit boundary).
    fn align(self) -> usize {
        match self {
            Transform::AesGcm16 { .. } => 4,
            Transform::AesCbc { .. } => AES_BLOCK,
        }
    }

    /// Bytes ESP adds to an inner packet of `len` bytes.
    pub fn overhead(self, len: usize) -> usize {
        let body = (len + 2).next_multiple_of(self.align());
        HEADER + self.iv_len() + body - len + self.icv_len()
    }
}

/// Why an SA could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{transform:?} takes {want} bytes of key material, not {got}")]
    Length {
        transform: Transform,
        want: usize,
        got: usize,
    },
    #[error("AES keys are 128 or 256 bits, not {0}")]
    KeyBits(u16),
}

/// Why a packet was refused, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspDrop {
    /// Shorter than its header, IV, one block and ICV.
    Truncated,
    /// Not this SA's SPI.
    WrongSpi,
    /// Its sequence number was accepted already.
    Replayed,
    /// Its sequence number is below the replay window.
    TooOld,
    /// Sequence number 0 (never sent).
    ZeroSequence,
    /// The ICV does not match: forged, corrupted, or another key.
    AuthFailed,
    /// The ciphertext is not a whole number of cipher blocks.
    BadLength,
    /// The pad length or the padding bytes are wrong.
    BadPadding,
    /// A dummy packet (next header 59).
    Dummy,
    /// Outbound: the 32-bit sequence number is used up; the SA must be
    /// rekeyed (RFC 4303 §3.3.3) and sends nothing more.
    SequenceExhausted,
}

impl EspDrop {
    pub const ALL: [EspDrop; 10] = [
        EspDrop::Truncated,
        EspDrop::WrongSpi,
        EspDrop::Replayed,
        EspDrop::TooOld,
        EspDrop::ZeroSequence,
        EspDrop::AuthFailed,
        EspDrop::BadLength,
        EspDrop::BadPadding,
        EspDrop::Dummy,
        EspDrop::SequenceExhausted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EspDrop::Truncated => "truncated",
            EspDrop::WrongSpi => "wrong_spi",
            EspDrop::Replayed => "replayed",
            EspDrop::TooOld => "too_old",
            EspDrop::ZeroSequence => "zero_sequence",
            EspDrop::AuthFailed => "auth_failed",
            EspDrop::BadLength => "bad_length",
            EspDrop::BadPadding => "bad_padding",
            EspDrop::Dummy => "dummy",
            EspDrop::SequenceExhausted => "sequence_exhausted",
        }
    }
}

/// One SA's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspCounters {
    pub packets: u64,
    /// Inner packets' bytes.
    pub bytes: u64,
    /// Per [`EspDrop`], in [`EspDrop::ALL`] order.
    pub drops: [u64; EspDrop::ALL.len()],
}

impl EspCounters {
    pub fn dropped(&self, reason: EspDrop) -> u64 {
        self.drops[reason as usize]
    }
}

/// A pre-keyed HMAC, cloned per packet.
#[derive(Clone)]
enum Hmacs {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Hmacs {
    fn new(integrity: Integrity, key: &[u8]) -> Option<Hmacs> {
        Some(match integrity {
            Integrity::Sha1 => Hmacs::Sha1(Hmac::new_from_slice(key).ok()?),
            Integrity::Sha256 => Hmacs::Sha256(Hmac::new_from_slice(key).ok()?),
            Integrity::Sha384 => Hmacs::Sha384(Hmac::new_from_slice(key).ok()?),
            Integrity::Sha512 => Hmacs::Sha512(Hmac::new_from_slice(key).ok()?),
        })
    }

    /// The full HMAC of `data` into `out`; its length.
    fn mac(&self, data: &[u8], out: &mut [u8; 64]) -> usize {
        fn run<M: Mac + Clone>(m: &M, data: &[u8], out: &mut [u8; 64]) -> usize {
            let mut m = m.clone();
            m.update(data);
            let tag = m.finalize().into_bytes();
            let n = tag.len().min(out.len());
            out[..n].copy_from_slice(&tag[..n]);
            n
        }
        match self {
            Hmacs::Sha1(m) => run(m, data, out),
            Hmacs::Sha256(m) => run(m, data, out),
            Hmacs::Sha384(m) => run(m, data, out),
            Hmacs::Sha512(m) => run(m, data, out),
        }
    }
}

/// The keyed cipher of one direction.
#[derive(Clone)]
enum Keyed {
    Gcm { gcm: Gcm, salt: [u8; GCM_SALT] },
    Cbc { aes: Aes, mac: Box<Hmacs> },
}

impl core::fmt::Debug for Keyed {
    // Keys are never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Keyed::Gcm { .. } => "AES-GCM",
            Keyed::Cbc { .. } => "AES-CBC",
        })
    }
}

impl Keyed {
    fn new(transform: Transform, keymat: &[u8]) -> Result<Keyed, KeyError> {
        let want = transform.keymat_len();
        let length = KeyError::Length {
            transform,
            want,
            got: keymat.len(),
        };
        if keymat.len() != want {
            return Err(length);
        }
        match transform {
            Transform::AesGcm16 { key_bits } => {
                let (key, salt) = keymat.split_at(keymat.len() - GCM_SALT);
                let salt: [u8; GCM_SALT] = salt.try_into().map_err(|_| length.clone())?;
                let gcm = match key_bits {
                    128 | 256 => Gcm::new(key_bits, key).ok_or(length)?,
                    other => return Err(KeyError::KeyBits(other)),
                };
                Ok(Keyed::Gcm { gcm, salt })
            }
            Transform::AesCbc {
                key_bits,
                integrity,
            } => {
                let (key, auth) = keymat.split_at(usize::from(key_bits / 8));
                let Some(mac) = Hmacs::new(integrity, auth).map(Box::new) else {
                    return Err(length);
                };
                let aes = match key_bits {
                    128 | 256 => Aes::new(key_bits, key).ok_or(length)?,
                    other => return Err(KeyError::KeyBits(other)),
                };
                Ok(Keyed::Cbc { aes, mac })
            }
        }
    }
}

fn gcm_nonce(salt: &[u8; GCM_SALT], iv: &[u8]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..GCM_SALT].copy_from_slice(salt);
    nonce[GCM_SALT..].copy_from_slice(&iv[..GCM_IV]);
    nonce
}

/// The sending half of a tunnel's SA pair.
#[derive(Debug)]
pub struct OutboundSa {
    spi: u32,
    transform: Transform,
    keyed: Keyed,
    /// The last sequence number sent.
    seq: u32,
    pub counters: EspCounters,
}

impl OutboundSa {
    /// `spi` is the peer's (it chose it for its inbound SA).
    pub fn new(spi: u32, transform: Transform, keymat: &[u8]) -> Result<OutboundSa, KeyError> {
        Ok(OutboundSa {
            spi,
            transform,
            keyed: Keyed::new(transform, keymat)?,
            seq: 0,
            counters: EspCounters::default(),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn transform(&self) -> Transform {
        self.transform
    }

    /// The last sequence number sent.
    pub fn sequence(&self) -> u32 {
        self.seq
    }

    /// Appends the ESP packet carrying `inner` (an IP packet whose
    /// protocol is `next_header`) to `out`, after whatever the caller put
    /// there (an outer IP and UDP header).
    pub fn seal(
        &mut self,
        inner: &[u8],
        next_header: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), EspDrop> {
        let Some(seq) = self.seq.checked_add(1) else {
            self.counters.drops[EspDrop::SequenceExhausted as usize] += 1;
            return Err(EspDrop::SequenceExhausted);
        };
        self.seq = seq;
        let t = self.transform;
        let start = out.len();
        let body = (inner.len() + 2).next_multiple_of(t.align());
        let pad = body - inner.len() - 2;
        out.reserve(HEADER + t.iv_len() + body + t.icv_len());
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        let iv_at = out.len();
        let body_at = iv_at + t.iv_len();
        match &self.keyed {
            // RFC 4106 §3.1: the IV need only be unique per key; the
            // sequence number is.
            Keyed::Gcm { .. } => out.extend_from_slice(&u64::from(seq).to_be_bytes()),
            Keyed::Cbc { aes, .. } => out.extend_from_slice(&aes.iv(seq)),
        }
        out.extend_from_slice(inner);
        // RFC 4303 §2.4: padding bytes 1, 2, 3, …
        out.extend(1..=pad as u8);
        out.push(pad as u8);
        out.push(next_header);
        let sealed = match &self.keyed {
            Keyed::Gcm { gcm, salt } => {
                let nonce = gcm_nonce(salt, &out[iv_at..body_at]);
                let (head, body) = out.split_at_mut(body_at);
                match gcm.seal(nonce, &head[start..iv_at], body) {
                    Some(tag) => {
                        out.extend_from_slice(&tag);
                        true
                    }
                    None => false,
                }
            }
            Keyed::Cbc { aes, mac } => {
                let mut iv = [0u8; AES_BLOCK];
                iv.copy_from_slice(&out[iv_at..body_at]);
                let ok = aes.encrypt(iv, &mut out[body_at..]);
                let mut full = [0u8; 64];
                mac.mac(&out[start..], &mut full);
                out.extend_from_slice(&full[..t.icv_len()]);
                ok
            }
        };
        if !sealed {
            // Only a plaintext beyond GCM's 64 GiB or not whole blocks,
            // which the padding above rules out.
            out.truncate(start);
            self.counters.drops[EspDrop::BadLength as usize] += 1;
            return Err(EspDrop::BadLength);
        }
        self.counters.packets += 1;
        self.counters.bytes += inner.len() as u64;
        Ok(())
    }
}

/// An opened packet: its inner packet's place in the buffer, and what it
/// is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub next_header: u8,
    pub inner: Range<usize>,
    pub seq: u32,
}

/// The receiving half of a tunnel's SA pair.
#[derive(Debug)]
pub struct InboundSa {
    spi: u32,
    transform: Transform,
    keyed: Keyed,
    window: ReplayWindow,
    pub counters: EspCounters,
}

/// The SPI of an ESP packet (to find its SA), if it is long enough.
pub fn spi_of(packet: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(packet.get(..4)?.try_into().ok()?))
}

impl InboundSa {
    /// `spi` is ours (we chose it; the peer sends with it).
    pub fn new(spi: u32, transform: Transform, keymat: &[u8]) -> Result<InboundSa, KeyError> {
        Ok(InboundSa {
            spi,
            transform,
            keyed: Keyed::new(transform, keymat)?,
            window: ReplayWindow::default(),
            counters: EspCounters::default(),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The highest sequence number accepted.
    pub fn highest(&self) -> u32 {
        self.window.top()
    }

    fn drop(&mut self, reason: EspDrop) -> EspDrop {
        self.counters.drops[reason as usize] += 1;
        reason
    }

    /// Checks and decrypts the ESP packet `packet` (from its SPI on) in
    /// place; the inner packet is then `packet[opened.inner]`.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, EspDrop> {
        let t = self.transform;
        let (iv_len, icv_len) = (t.iv_len(), t.icv_len());
        if packet.len() < HEADER + iv_len + t.align() + icv_len {
            return Err(self.drop(EspDrop::Truncated));
        }
        if spi_of(packet) != Some(self.spi) {
            return Err(self.drop(EspDrop::WrongSpi));
        }
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if let Err(r) = self.window.check(seq) {
            return Err(self.drop(match r {
                Replay::Duplicate => EspDrop::Replayed,
                Replay::TooOld => EspDrop::TooOld,
                Replay::Zero => EspDrop::ZeroSequence,
            }));
        }
        let body_at = HEADER + iv_len;
        let icv_at = packet.len() - icv_len;
        if !(icv_at - body_at).is_multiple_of(t.align()) {
            return Err(self.drop(EspDrop::BadLength));
        }
        let authentic = match &self.keyed {
            Keyed::Gcm { gcm, salt } => {
                let nonce = gcm_nonce(salt, &packet[HEADER..body_at]);
                let (head, rest) = packet.split_at_mut(body_at);
                let (body, icv) = rest.split_at_mut(icv_at - body_at);
                gcm.open(nonce, &head[..HEADER], body, icv)
            }
            Keyed::Cbc { aes, mac } => {
                let mut full = [0u8; 64];
                mac.mac(&packet[..icv_at], &mut full);
                let matches: bool = full[..icv_len].ct_eq(&packet[icv_at..]).into();
                let mut iv = [0u8; AES_BLOCK];
                iv.copy_from_slice(&packet[HEADER..body_at]);
                matches && aes.decrypt(iv, &mut packet[body_at..icv_at])
            }
        };
        if !authentic {
            return Err(self.drop(EspDrop::AuthFailed));
        }
        // Authentic: the window moves even if the content is refused
        // below (the packet was the peer's; RFC 4303 §3.4.3).
        self.window.accept(seq);
        let pad = usize::from(packet[icv_at - 2]);
        let next_header = packet[icv_at - 1];
        let Some(inner_end) = (icv_at - 2).checked_sub(pad).filter(|e| *e >= body_at) else {
            return Err(self.drop(EspDrop::BadPadding));
        };
        let padding_ok = packet[inner_end..icv_at - 2]
            .iter()
            .zip(1u8..)
            .all(|(b, want)| *b == want);
        if !padding_ok {
            return Err(self.drop(EspDrop::BadPadding));
        }
        if next_header == NO_NEXT_HEADER {
            return Err(self.drop(EspDrop::Dummy));
        }
        self.counters.packets += 1;
        self.counters.bytes += (inner_end - body_at) as u64;
        Ok(Opened {
            next_header,
            inner: body_at..inner_end,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_sequence_sends_nothing_more() {
        let t = Transform::AesGcm16 { key_bits: 128 };
        let mut sa = OutboundSa::new(1, t, &[0; 20]).unwrap();
        sa.seq = u32::MAX - 1;
        let mut out = Vec::new();
        sa.seal(&[0; 20], IPV4, &mut out).unwrap();
        assert_eq!(sa.sequence(), u32::MAX);
        let before = out.len();
        assert_eq!(
            sa.seal(&[0; 20], IPV4, &mut out),
            Err(EspDrop::SequenceExhausted)
        );
        assert_eq!(out.len(), before, "nothing written");
        assert_eq!(sa.counters.dropped(EspDrop::SequenceExhausted), 1);
    }
}
