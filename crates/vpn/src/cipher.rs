//! AES in the two modes the tunnels use, keyed once: GCM (RFC 4106 for
//! ESP, RFC 5282 for IKE's SK payload) and CBC (RFC 3602), for 128- and
//! 256-bit keys. Shared by [`crate::esp`] and [`crate::ike::crypto`].

use aes::{Aes128, Aes256};
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit};

pub const ICV_GCM: usize = 16;
pub const AES_BLOCK: usize = 16;

/// AES-GCM of either key size.
#[derive(Clone)]
pub enum Gcm {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Gcm {
    /// `None` for a key of another length than `key_bits` says.
    pub fn new(key_bits: u16, key: &[u8]) -> Option<Gcm> {
        match key_bits {
            128 => Some(Gcm::A128(Box::new(Aes128Gcm::new_from_slice(key).ok()?))),
            256 => Some(Gcm::A256(Box::new(Aes256Gcm::new_from_slice(key).ok()?))),
            _ => None,
        }
    }

    pub fn seal(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) -> Option<[u8; ICV_GCM]> {
        let tag = match self {
            Gcm::A128(a) => a
                .encrypt_inout_detached(&Nonce::<Aes128Gcm>::from(nonce), aad, buf.into())
                .ok()?,
            Gcm::A256(a) => a
                .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(nonce), aad, buf.into())
                .ok()?,
        };
        tag.as_slice().try_into().ok()
    }

    pub fn open(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        match self {
            Gcm::A128(a) => Tag::<Aes128Gcm>::try_from(tag).is_ok_and(|tag| {
                a.decrypt_inout_detached(&Nonce::<Aes128Gcm>::from(nonce), aad, buf.into(), &tag)
                    .is_ok()
            }),
            Gcm::A256(a) => Tag::<Aes256Gcm>::try_from(tag).is_ok_and(|tag| {
                a.decrypt_inout_detached(&Nonce::<Aes256Gcm>::from(nonce), aad, buf.into(), &tag)
                    .is_ok()
            }),
        }
    }
}

/// AES of either key size, for CBC.
#[derive(Clone)]
pub enum Aes {
    A128(Box<Aes128>),
    A256(Box<Aes256>),
}

impl Aes {
    /// `None` for a key of another length than `key_bits` says.
    pub fn new(key_bits: u16, key: &[u8]) -> Option<Aes> {
        match key_bits {
            128 => Some(Aes::A128(Box::new(Aes128::new_from_slice(key).ok()?))),
            256 => Some(Aes::A256(Box::new(Aes256::new_from_slice(key).ok()?))),
            _ => None,
        }
    }

    /// An unpredictable IV (RFC 3602 §3: it must be): the SA's key
    /// encrypts its sequence number, which never repeats.
    pub fn iv(&self, seq: u32) -> [u8; AES_BLOCK] {
        let mut block = [0u8; AES_BLOCK];
        block[12..].copy_from_slice(&seq.to_be_bytes());
        let mut b = block.into();
        match self {
            Aes::A128(a) => a.encrypt_block(&mut b),
            Aes::A256(a) => a.encrypt_block(&mut b),
        }
        b.into()
    }

    pub fn encrypt(&self, iv: [u8; AES_BLOCK], buf: &mut [u8]) -> bool {
        let len = buf.len();
        match self {
            Aes::A128(a) => cbc::Encryptor::inner_iv_init((**a).clone(), &iv.into())
                .encrypt_padded::<NoPadding>(buf, len)
                .is_ok(),
            Aes::A256(a) => cbc::Encryptor::inner_iv_init((**a).clone(), &iv.into())
                .encrypt_padded::<NoPadding>(buf, len)
                .is_ok(),
        }
    }

    pub fn decrypt(&self, iv: [u8; AES_BLOCK], buf: &mut [u8]) -> bool {
        match self {
            Aes::A128(a) => cbc::Decryptor::inner_iv_init((**a).clone(), &iv.into())
                .decrypt_padded::<NoPadding>(buf)
                .is_ok(),
            Aes::A256(a) => cbc::Decryptor::inner_iv_init((**a).clone(), &iv.into())
                .decrypt_padded::<NoPadding>(buf)
                .is_ok(),
        }
    }
}

impl core::fmt::Debug for Gcm {
    // Keys are never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Gcm(..)")
    }
}

impl core::fmt::Debug for Aes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aes(..)")
    }
}
