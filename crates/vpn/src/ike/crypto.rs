//! IKEv2's cryptography (RFC 7296 §2.13–2.15, §3.14; RFC 5282 for
//! AES-GCM in the SK payload; RFC 5903 for the ECP groups): the
//! Diffie-Hellman groups AWS's tunnels accept (spec 10.2), the PRFs and
//! `prf+`, the IKE SA's seven keys, a child SA's key material, the
//! pre-shared-key AUTH value, and sealing and opening the SK payload in
//! place in an encoded message.
//!
//! Sans-IO: randomness comes in as bytes from the caller. MODP
//! exponentiation is num-bigint's, which is not constant-time; the
//! exponent is ephemeral (one per exchange), as in most IKE daemons'
//! fallback paths.

use core::ops::Range;

use hmac::{Hmac, KeyInit, Mac};
use num_bigint::BigUint;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use crate::cipher::{Aes, Gcm};

/// What went wrong; each a reason a responder answers or counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("Diffie-Hellman group {0} is not offered")]
    UnsupportedGroup(u16),
    #[error("the peer's public value is not valid for its group")]
    BadPublicValue,
    #[error("not enough random bytes: {want} needed")]
    Random { want: usize },
    #[error("a key of the wrong length")]
    KeyLength,
    #[error("the SK payload is too short or not whole cipher blocks")]
    Malformed,
    #[error("the SK payload's integrity check failed")]
    Integrity,
    #[error("the SK payload's padding is wrong")]
    Padding,
}

/// IKE transform type 4: the Diffie-Hellman groups served: AWS's (spec
/// 10.2) but 22 to 24 (RFC 5114's MODP groups with small subgroups, which
/// RFC 8247 deprecates and nothing here serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2: 1,024-bit MODP (RFC 2409), still AWS's default offer.
    Modp1024,
    /// 5: 1,536-bit MODP (RFC 3526), offered in phase 2 only.
    Modp1536,
    /// 14 to 18: 2,048 to 8,192-bit MODP (RFC 3526).
    Modp2048,
    Modp3072,
    Modp4096,
    Modp6144,
    Modp8192,
    /// 19 to 21: NIST curves (RFC 5903).
    Ecp256,
    Ecp384,
    Ecp521,
}

impl DhGroup {
    pub const ALL: [DhGroup; 10] = [
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
        DhGroup::Modp6144,
        DhGroup::Modp8192,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
    ];

    pub fn from_id(id: u16) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| g.id() == id)
    }

    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp1536 => 5,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Modp6144 => 17,
            DhGroup::Modp8192 => 18,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
        }
    }

    /// The KE payload's key data length.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp1024 => 128,
            DhGroup::Modp1536 => 192,
            DhGroup::Modp2048 => 256,
            DhGroup::Modp3072 => 384,
            DhGroup::Modp4096 => 512,
            DhGroup::Modp6144 => 768,
            DhGroup::Modp8192 => 1024,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Ecp521 => 132,
        }
    }

    /// Random bytes a private value takes.
    pub fn secret_len(self) -> usize {
        match self {
            // Twice the group's strength, as RFC 3526 §8 advises.
            DhGroup::Modp1024 => 32,
            DhGroup::Modp1536
            | DhGroup::Modp2048
            | DhGroup::Modp3072
            | DhGroup::Modp4096
            | DhGroup::Modp6144
            | DhGroup::Modp8192 => 64,
            DhGroup::Ecp256 => 32,
            DhGroup::Ecp384 => 48,
            DhGroup::Ecp521 => 66,
        }
    }

    /// A MODP group's prime (generator 2); `None` for the curves.
    pub fn prime(self) -> Option<BigUint> {
        let hex = match self {
            DhGroup::Modp1024 => MODP_2,
            DhGroup::Modp1536 => MODP_5,
            DhGroup::Modp2048 => MODP_14,
            DhGroup::Modp3072 => MODP_15,
            DhGroup::Modp4096 => MODP_16,
            DhGroup::Modp6144 => MODP_17,
            DhGroup::Modp8192 => MODP_18,
            _ => return None,
        };
        BigUint::parse_bytes(hex.as_bytes(), 16)
    }
}

// The MODP primes (generator 2), from RFC 2409 §6.2 and RFC 3526 §3-5:
// 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + offset). The tests check
// that each is a safe prime.
const MODP_2: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
);
const MODP_14: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);
const MODP_15: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);
const MODP_16: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
);
const MODP_5: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
);
const MODP_17: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026",
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE",
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B",
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC",
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E",
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA",
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76",
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468",
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF",
);
const MODP_18: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026",
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE",
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B",
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC",
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E",
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA",
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76",
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468",
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4",
    "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED",
    "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D",
    "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B",
    "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6",
    "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D",
    "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92",
    "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA",
    "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF",
);

/// One side's ephemeral Diffie-Hellman private value.
pub struct DhPrivate {
    group: DhGroup,
    secret: Vec<u8>,
}

impl core::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhPrivate({:?})", self.group)
    }
}

fn to_len(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
    // Left-padded with zeros to the group's length (RFC 7296 §3.4).
    if bytes.len() < len {
        let mut v = vec![0; len - bytes.len()];
        v.append(&mut bytes);
        return v;
    }
    bytes
}

macro_rules! ecp {
    ($curve:ident, $random:expr, $peer:expr) => {{
        let secret =
            $curve::SecretKey::from_slice($random).map_err(|_| CryptoError::BadPublicValue)?;
        match $peer {
            None => {
                let public = secret.public_key().to_sec1_bytes();
                // SEC1's uncompressed form less its 0x04 (RFC 5903 §7).
                Ok(public.get(1..).map(<[u8]>::to_vec).unwrap_or_default())
            }
            Some(peer) => {
                let mut sec1 = Vec::with_capacity(1 + peer.len());
                sec1.push(4);
                sec1.extend_from_slice(peer);
                let peer = $curve::PublicKey::from_sec1_bytes(&sec1)
                    .map_err(|_| CryptoError::BadPublicValue)?;
                // The shared secret is the x coordinate (RFC 5903 §7).
                Ok(secret.diffie_hellman(&peer).raw_secret_bytes().to_vec())
            }
        }
    }};
}

impl DhPrivate {
    /// A private value of `group` from `random` ([`DhGroup::secret_len`]
    /// bytes), and its public value for the KE payload. For the curves,
    /// `random` must be a valid scalar (below the order, not zero); a
    /// caller retries with fresh bytes on [`CryptoError::BadPublicValue`].
    pub fn new(group: DhGroup, random: &[u8]) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
        let want = group.secret_len();
        let Some(secret) = random.get(..want) else {
            return Err(CryptoError::Random { want });
        };
        let private = DhPrivate {
            group,
            secret: secret.to_vec(),
        };
        let public = private.compute(None)?;
        Ok((private, public))
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// g^ir from the peer's public value (its KE payload's key data).
    pub fn shared(&self, peer: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if peer.len() != self.group.public_len() {
            return Err(CryptoError::BadPublicValue);
        }
        self.compute(Some(peer))
    }

    fn compute(&self, peer: Option<&[u8]>) -> Result<Vec<u8>, CryptoError> {
        let len = self.group.public_len();
        match self.group {
            DhGroup::Ecp256 => ecp!(p256, &self.secret, peer),
            DhGroup::Ecp384 => ecp!(p384, &self.secret, peer),
            DhGroup::Ecp521 => ecp!(p521, &self.secret, peer),
            modp => {
                let p = modp
                    .prime()
                    .ok_or(CryptoError::UnsupportedGroup(modp.id()))?;
                let x = BigUint::from_bytes_be(&self.secret);
                let base = match peer {
                    None => BigUint::from(2u8),
                    Some(peer) => {
                        let y = BigUint::from_bytes_be(peer);
                        // RFC 6989 §2.1: 1 < y < p - 1.
                        let one = BigUint::from(1u8);
                        if y <= one || y >= &p - &one {
                            return Err(CryptoError::BadPublicValue);
                        }
                        y
                    }
                };
                Ok(to_len(base.modpow(&x, &p).to_bytes_be(), len))
            }
        }
    }
}

/// IKE transform type 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

fn hmac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

impl Prf {
    pub fn from_id(id: u16) -> Option<Prf> {
        Some(match id {
            2 => Prf::HmacSha1,
            5 => Prf::HmacSha256,
            6 => Prf::HmacSha384,
            7 => Prf::HmacSha512,
            _ => return None,
        })
    }

    pub fn id(self) -> u16 {
        match self {
            Prf::HmacSha1 => 2,
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }

    /// Output length, which is also SK_d's and SK_p's length.
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// prf(key, the concatenation of `parts`).
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Prf::HmacSha1 => hmac::<Hmac<Sha1>>(key, parts),
            Prf::HmacSha256 => hmac::<Hmac<Sha256>>(key, parts),
            Prf::HmacSha384 => hmac::<Hmac<Sha384>>(key, parts),
            Prf::HmacSha512 => hmac::<Hmac<Sha512>>(key, parts),
        }
    }

    /// prf+ (RFC 7296 §2.13): T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S
    /// | n), the first `len` bytes of T1 | T2 | ….
    pub fn plus(self, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + self.output_len());
        let mut t: Vec<u8> = Vec::new();
        let mut n: u8 = 1;
        while out.len() < len {
            t = self.prf(key, &[&t, seed, &[n]]);
            out.extend_from_slice(&t);
            // 255 blocks at most; no suite here needs more than a few.
            n = n.saturating_add(1);
        }
        out.truncate(len);
        out
    }
}

/// IKE transform type 3, for an AES-CBC SK payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    HmacSha1_96,
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

impl Integ {
    pub fn from_id(id: u16) -> Option<Integ> {
        Some(match id {
            2 => Integ::HmacSha1_96,
            12 => Integ::HmacSha256_128,
            13 => Integ::HmacSha384_192,
            14 => Integ::HmacSha512_256,
            _ => return None,
        })
    }

    pub fn id(self) -> u16 {
        match self {
            Integ::HmacSha1_96 => 2,
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 20,
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    pub fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 12,
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut full = match self {
            Integ::HmacSha1_96 => hmac::<Hmac<Sha1>>(key, &[data]),
            Integ::HmacSha256_128 => hmac::<Hmac<Sha256>>(key, &[data]),
            Integ::HmacSha384_192 => hmac::<Hmac<Sha384>>(key, &[data]),
            Integ::HmacSha512_256 => hmac::<Hmac<Sha512>>(key, &[data]),
        };
        full.truncate(self.icv_len());
        full
    }
}

/// IKE transform type 1 for the SK payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_CBC (12), with an [`Integ`].
    AesCbc { key_bits: u16 },
    /// ENCR_AES_GCM_16 (20): its own integrity (RFC 5282).
    AesGcm16 { key_bits: u16 },
}

const GCM_SALT: usize = 4;
const GCM_IV: usize = 8;
const GCM_ICV: usize = 16;
const BLOCK: usize = 16;

impl Encr {
    /// The key length SK_e takes (GCM's includes its 4-byte salt).
    pub fn key_len(self) -> usize {
        match self {
            Encr::AesCbc { key_bits } => usize::from(key_bits / 8),
            Encr::AesGcm16 { key_bits } => usize::from(key_bits / 8) + GCM_SALT,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Encr::AesCbc { .. } => BLOCK,
            Encr::AesGcm16 { .. } => GCM_IV,
        }
    }
}

/// An IKE SA's negotiated algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: Encr,
    pub prf: Prf,
    /// `None` with GCM.
    pub integ: Option<Integ>,
    pub dh: DhGroup,
}

impl IkeSuite {
    fn icv_len(&self) -> usize {
        match (self.encr, self.integ) {
            (Encr::AesGcm16 { .. }, _) => GCM_ICV,
            (Encr::AesCbc { .. }, Some(i)) => i.icv_len(),
            (Encr::AesCbc { .. }, None) => 0,
        }
    }
}

/// An IKE SA's keys (RFC 7296 §2.14).
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeys {
    pub sk_d: Vec<u8>,
    pub sk_ai: Vec<u8>,
    pub sk_ar: Vec<u8>,
    pub sk_ei: Vec<u8>,
    pub sk_er: Vec<u8>,
    pub sk_pi: Vec<u8>,
    pub sk_pr: Vec<u8>,
}

impl core::fmt::Debug for IkeKeys {
    // Keys are never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IkeKeys(..)")
    }
}

impl IkeKeys {
    /// SKEYSEED = prf(Ni | Nr, g^ir); the keys are prf+(SKEYSEED, Ni | Nr
    /// | SPIi | SPIr) in the order SK_d, SK_ai, SK_ar, SK_ei, SK_er,
    /// SK_pi, SK_pr.
    pub fn derive(
        suite: &IkeSuite,
        ni: &[u8],
        nr: &[u8],
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let prf = suite.prf;
        let nonces = [ni, nr].concat();
        let skeyseed = prf.prf(&nonces, &[shared]);
        IkeKeys::from_skeyseed(suite, &skeyseed, &nonces, spi_i, spi_r)
    }

    /// The new keys of a rekeyed IKE SA (RFC 7296 §2.18): SKEYSEED =
    /// prf(SK_d (old), g^ir (new) | Ni | Nr).
    pub fn rekeyed(
        suite: &IkeSuite,
        old_sk_d: &[u8],
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let nonces = [ni, nr].concat();
        let skeyseed = suite.prf.prf(old_sk_d, &[shared, &nonces]);
        IkeKeys::from_skeyseed(suite, &skeyseed, &nonces, spi_i, spi_r)
    }

    fn from_skeyseed(
        suite: &IkeSuite,
        skeyseed: &[u8],
        nonces: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let prf = suite.prf;
        let a = suite.integ.map_or(0, Integ::key_len);
        let e = suite.encr.key_len();
        let p = prf.output_len();
        let seed = [nonces, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        let km = prf.plus(skeyseed, &seed, p + 2 * a + 2 * e + 2 * p);
        let mut at = 0;
        let mut take = |n: usize| {
            let v = km[at..at + n].to_vec();
            at += n;
            v
        };
        IkeKeys {
            sk_d: take(p),
            sk_ai: take(a),
            sk_ar: take(a),
            sk_ei: take(e),
            sk_er: take(e),
            sk_pi: take(p),
            sk_pr: take(p),
        }
    }
}

/// A child SA's key material (RFC 7296 §2.17): prf+(SK_d, [g^ir (new)] |
/// Ni | Nr); the initiator's inbound SA's keys come first.
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Vec<u8> {
    let seed = [shared.unwrap_or(&[]), ni, nr].concat();
    prf.plus(sk_d, &seed, len)
}

/// The pre-shared-key AUTH value (RFC 7296 §2.15): prf(prf(PSK, "Key Pad
/// for IKEv2"), <message> | <the other side's nonce> | prf(SK_p, <ID
/// payload body>)). `message` is the signer's first message as sent;
/// `id_body` its ID payload without the generic header.
pub fn psk_auth(
    prf: Prf,
    psk: &[u8],
    message: &[u8],
    other_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let key = prf.prf(psk, &[b"Key Pad for IKEv2"]);
    let id = prf.prf(sk_p, &[id_body]);
    prf.prf(&key, &[message, other_nonce, &id])
}

/// Whether an AUTH value matches, in constant time.
pub fn auth_matches(want: &[u8], got: &[u8]) -> bool {
    want.len() == got.len() && bool::from(want.ct_eq(got))
}

/// The SK payload's body for `plaintext` (the encoded inner payloads):
/// IV, the plaintext padded as the cipher needs, the pad length, and room
/// for the ICV. The message is then encoded around it and
/// [`seal_in_place`] encrypts it. `iv` is [`Encr::iv_len`] bytes: random
/// for CBC (it must be unpredictable), unique per key for GCM.
pub fn sk_body(suite: &IkeSuite, iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let iv = iv.get(..suite.encr.iv_len()).ok_or(CryptoError::Random {
        want: suite.encr.iv_len(),
    })?;
    let align = match suite.encr {
        Encr::AesCbc { .. } => BLOCK,
        Encr::AesGcm16 { .. } => 1,
    };
    let pad = (plaintext.len() + 1).next_multiple_of(align) - plaintext.len() - 1;
    let mut body = Vec::with_capacity(iv.len() + plaintext.len() + pad + 1 + suite.icv_len());
    body.extend_from_slice(iv);
    body.extend_from_slice(plaintext);
    body.resize(body.len() + pad, 0);
    body.push(pad as u8);
    body.resize(body.len() + suite.icv_len(), 0);
    Ok(body)
}

/// Encrypts the SK payload of the encoded `message`, whose generic header
/// is at `sk_at` and whose body [`sk_body`] made, with the sender's keys
/// (`sk_e`, `sk_a`: the initiator's for a message it sends).
pub fn seal_in_place(
    suite: &IkeSuite,
    sk_e: &[u8],
    sk_a: &[u8],
    message: &mut [u8],
    sk_at: usize,
) -> Result<(), CryptoError> {
    let icv = suite.icv_len();
    let iv_at = sk_at + 4;
    let body_at = iv_at + suite.encr.iv_len();
    let icv_at = message
        .len()
        .checked_sub(icv)
        .ok_or(CryptoError::Malformed)?;
    if body_at > icv_at {
        return Err(CryptoError::Malformed);
    }
    match suite.encr {
        Encr::AesGcm16 { key_bits } => {
            let nonce = gcm_nonce(sk_e, &message[iv_at..body_at])?;
            let (aad, rest) = message.split_at_mut(iv_at);
            let (body, tag_out) = rest[body_at - iv_at..].split_at_mut(icv_at - body_at);
            let tag = gcm_seal(key_bits, sk_e, nonce, aad, body)?;
            tag_out.copy_from_slice(&tag);
        }
        Encr::AesCbc { key_bits } => {
            let iv: [u8; BLOCK] = message[iv_at..body_at]
                .try_into()
                .map_err(|_| CryptoError::Malformed)?;
            cbc_encrypt(key_bits, sk_e, iv, &mut message[body_at..icv_at])?;
            let integ = suite.integ.ok_or(CryptoError::KeyLength)?;
            let mac = integ.mac(sk_a, &message[..icv_at]);
            message[icv_at..].copy_from_slice(&mac);
        }
    }
    Ok(())
}

/// Checks and decrypts the SK payload of the received `message` in place,
/// with the sender's keys; the inner payloads are then `message[range]`.
pub fn open_in_place(
    suite: &IkeSuite,
    sk_e: &[u8],
    sk_a: &[u8],
    message: &mut [u8],
    sk_at: usize,
) -> Result<Range<usize>, CryptoError> {
    let icv = suite.icv_len();
    let iv_at = sk_at + 4;
    let body_at = iv_at + suite.encr.iv_len();
    let icv_at = message
        .len()
        .checked_sub(icv)
        .ok_or(CryptoError::Malformed)?;
    if body_at >= icv_at {
        return Err(CryptoError::Malformed);
    }
    match suite.encr {
        Encr::AesGcm16 { key_bits } => {
            let nonce = gcm_nonce(sk_e, &message[iv_at..body_at])?;
            let (aad, rest) = message.split_at_mut(iv_at);
            let (body, tag) = rest[body_at - iv_at..].split_at_mut(icv_at - body_at);
            gcm_open(key_bits, sk_e, nonce, aad, body, tag)?;
        }
        Encr::AesCbc { key_bits } => {
            let integ = suite.integ.ok_or(CryptoError::KeyLength)?;
            let mac = integ.mac(sk_a, &message[..icv_at]);
            if !auth_matches(&mac, &message[icv_at..]) {
                return Err(CryptoError::Integrity);
            }
            if !(icv_at - body_at).is_multiple_of(BLOCK) {
                return Err(CryptoError::Malformed);
            }
            let iv: [u8; BLOCK] = message[iv_at..body_at]
                .try_into()
                .map_err(|_| CryptoError::Malformed)?;
            cbc_decrypt(key_bits, sk_e, iv, &mut message[body_at..icv_at])?;
        }
    }
    let pad = usize::from(message[icv_at - 1]);
    let end = (icv_at - 1)
        .checked_sub(pad)
        .filter(|e| *e >= body_at)
        .ok_or(CryptoError::Padding)?;
    Ok(body_at..end)
}

fn gcm_nonce(sk_e: &[u8], iv: &[u8]) -> Result<[u8; 12], CryptoError> {
    let salt = sk_e
        .len()
        .checked_sub(GCM_SALT)
        .and_then(|at| sk_e.get(at..))
        .ok_or(CryptoError::KeyLength)?;
    let mut nonce = [0u8; 12];
    nonce[..GCM_SALT].copy_from_slice(salt);
    nonce[GCM_SALT..].copy_from_slice(iv.get(..GCM_IV).ok_or(CryptoError::Malformed)?);
    Ok(nonce)
}

fn gcm_key(sk_e: &[u8]) -> &[u8] {
    &sk_e[..sk_e.len().saturating_sub(GCM_SALT)]
}

fn gcm_seal(
    key_bits: u16,
    sk_e: &[u8],
    nonce: [u8; 12],
    aad: &[u8],
    body: &mut [u8],
) -> Result<[u8; GCM_ICV], CryptoError> {
    let gcm = Gcm::new(key_bits, gcm_key(sk_e)).ok_or(CryptoError::KeyLength)?;
    gcm.seal(nonce, aad, body).ok_or(CryptoError::Malformed)
}

fn gcm_open(
    key_bits: u16,
    sk_e: &[u8],
    nonce: [u8; 12],
    aad: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let gcm = Gcm::new(key_bits, gcm_key(sk_e)).ok_or(CryptoError::KeyLength)?;
    if gcm.open(nonce, aad, body, tag) {
        Ok(())
    } else {
        Err(CryptoError::Integrity)
    }
}

fn cbc_encrypt(
    key_bits: u16,
    key: &[u8],
    iv: [u8; BLOCK],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let aes = Aes::new(key_bits, key).ok_or(CryptoError::KeyLength)?;
    if aes.encrypt(iv, buf) {
        Ok(())
    } else {
        Err(CryptoError::Malformed)
    }
}

fn cbc_decrypt(
    key_bits: u16,
    key: &[u8],
    iv: [u8; BLOCK],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let aes = Aes::new(key_bits, key).ok_or(CryptoError::KeyLength)?;
    if aes.decrypt(iv, buf) {
        Ok(())
    } else {
        Err(CryptoError::Malformed)
    }
}
