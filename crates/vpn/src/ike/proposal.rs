//! Choosing from a peer's proposals (RFC 7296 §2.7, §3.3.6) what AWS's
//! tunnels accept by default (spec 10.2): AES-128/256 in CBC or GCM-16,
//! SHA-1 or SHA-2 (256, 384, 512) integrity and PRF, and Diffie-Hellman
//! groups 2, 14-16 and 19-21. The first proposal (in the peer's order)
//! that has one acceptable transform of every type it needs wins, each
//! type's first acceptable transform taken; the answer holds exactly one
//! transform of each type.

use super::crypto::{DhGroup, Encr, IkeSuite, Integ, Prf};
use super::message::{Proposal, TransformSpec, encr, esn, protocol, transform_type};
use crate::esp::{Integrity, Transform};

fn encr_of(t: &TransformSpec) -> Option<Encr> {
    let key_bits = t.key_len?;
    if key_bits != 128 && key_bits != 256 {
        return None;
    }
    match t.id {
        encr::AES_CBC => Some(Encr::AesCbc { key_bits }),
        encr::AES_GCM_16 => Some(Encr::AesGcm16 { key_bits }),
        _ => None,
    }
}

fn first<T>(
    p: &Proposal,
    kind: u8,
    accept: impl Fn(&TransformSpec) -> Option<T>,
) -> Option<(T, TransformSpec)> {
    p.transforms
        .iter()
        .filter(|t| t.kind == kind)
        .find_map(|t| accept(t).map(|v| (v, t.clone())))
}

fn has(p: &Proposal, kind: u8) -> bool {
    p.transforms.iter().any(|t| t.kind == kind)
}

/// The IKE SA's suite from an IKE_SA_INIT's SA payload, and the proposal
/// to answer with (the chosen transforms only). `None`: answer
/// NO_PROPOSAL_CHOSEN. The group of the peer's KE payload (`ke_group`)
/// is taken when its proposal lists it, saving a round trip.
pub fn choose_ike(proposals: &[Proposal], ke_group: Option<u16>) -> Option<(IkeSuite, Proposal)> {
    proposals
        .iter()
        .filter(|p| p.protocol == protocol::IKE)
        .find_map(|p| {
            let (encr, te) = first(p, transform_type::ENCR, encr_of)?;
            let (prf, tp) = first(p, transform_type::PRF, |t| Prf::from_id(t.id))?;
            // spec 10.2: group 5 is a phase 2 group only.
            let phase1 = |id: u16| DhGroup::from_id(id).filter(|g| *g != DhGroup::Modp1536);
            let (dh, td) = first(p, transform_type::DH, |t| {
                phase1(t.id).filter(|g| Some(g.id()) == ke_group)
            })
            .or_else(|| first(p, transform_type::DH, |t| phase1(t.id)))?;
            let mut chosen = vec![te, tp];
            let integ = match encr {
                // RFC 5282 §8: an AEAD takes no integrity transform (or
                // NONE).
                Encr::AesGcm16 { .. } => None,
                Encr::AesCbc { .. } => {
                    let (i, ti) = first(p, transform_type::INTEG, |t| Integ::from_id(t.id))?;
                    chosen.push(ti);
                    Some(i)
                }
            };
            chosen.push(td);
            Some((
                IkeSuite {
                    encr,
                    prf,
                    integ,
                    dh,
                },
                Proposal {
                    num: p.num,
                    protocol: p.protocol,
                    spi: p.spi.clone(),
                    transforms: chosen,
                },
            ))
        })
}

/// A child SA's ESP transform from an SA payload (IKE_AUTH's SAi2 or a
/// CREATE_CHILD_SA's), the peer's SPI, and the proposal to answer with
/// (`our_spi` in it). With `pfs`, the proposal must also name that
/// Diffie-Hellman group (a CREATE_CHILD_SA with a KE payload); without,
/// one that demands a group is skipped. Extended sequence numbers are
/// not offered: a proposal must allow "no ESN".
pub fn choose_esp(
    proposals: &[Proposal],
    our_spi: u32,
    pfs: Option<DhGroup>,
) -> Option<(Transform, u32, Proposal)> {
    proposals
        .iter()
        .filter(|p| p.protocol == protocol::ESP && p.spi.len() == 4)
        .find_map(|p| {
            let peer_spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
            let (encr, te) = first(p, transform_type::ENCR, encr_of)?;
            let mut chosen = vec![te];
            let transform = match encr {
                Encr::AesGcm16 { key_bits } => Transform::AesGcm16 { key_bits },
                Encr::AesCbc { key_bits } => {
                    let (integrity, ti) =
                        first(p, transform_type::INTEG, |t| match Integ::from_id(t.id)? {
                            Integ::HmacSha256_128 => Some(Integrity::Sha256),
                            Integ::HmacSha384_192 => Some(Integrity::Sha384),
                            Integ::HmacSha512_256 => Some(Integrity::Sha512),
                            Integ::HmacSha1_96 => Some(Integrity::Sha1),
                        })?;
                    chosen.push(ti);
                    Transform::AesCbc {
                        key_bits,
                        integrity,
                    }
                }
            };
            match pfs {
                Some(group) => {
                    let (_, td) = first(p, transform_type::DH, |t| {
                        (t.id == group.id()).then_some(())
                    })?;
                    chosen.push(td);
                }
                None => {
                    // A proposal that lists groups may also list NONE (0).
                    if has(p, transform_type::DH) {
                        let (_, td) = first(p, transform_type::DH, |t| (t.id == 0).then_some(()))?;
                        chosen.push(td);
                    }
                }
            }
            if has(p, transform_type::ESN) {
                let (_, tn) = first(p, transform_type::ESN, |t| (t.id == esn::NO).then_some(()))?;
                chosen.push(tn);
            }
            Some((
                transform,
                peer_spi,
                Proposal {
                    num: p.num,
                    protocol: p.protocol,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms: chosen,
                },
            ))
        })
}

/// The Diffie-Hellman group a CREATE_CHILD_SA's proposals ask for, if
/// any (the first acceptable one listed).
pub fn requested_group(proposals: &[Proposal]) -> Option<DhGroup> {
    proposals.iter().find_map(|p| {
        p.transforms
            .iter()
            .filter(|t| t.kind == transform_type::DH)
            .find_map(|t| DhGroup::from_id(t.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::message::{dh, integ, prf};

    fn t(kind: u8, id: u16, key_len: Option<u16>) -> TransformSpec {
        TransformSpec { kind, id, key_len }
    }

    #[test]
    fn the_first_acceptable_ike_proposal_wins_with_one_transform_each() {
        let proposals = vec![
            // 3DES and group 1: nothing acceptable.
            Proposal {
                num: 1,
                protocol: protocol::IKE,
                spi: vec![],
                transforms: vec![
                    t(transform_type::ENCR, 3, None),
                    t(transform_type::PRF, prf::HMAC_SHA1, None),
                    t(transform_type::INTEG, integ::HMAC_SHA1_96, None),
                    t(transform_type::DH, 1, None),
                ],
            },
            Proposal {
                num: 2,
                protocol: protocol::IKE,
                spi: vec![],
                transforms: vec![
                    t(transform_type::ENCR, encr::AES_CBC, Some(192)),
                    t(transform_type::ENCR, encr::AES_CBC, Some(256)),
                    t(transform_type::PRF, prf::HMAC_SHA2_256, None),
                    t(transform_type::INTEG, integ::HMAC_SHA2_256_128, None),
                    t(transform_type::DH, 31, None),
                    t(transform_type::DH, dh::MODP_2048, None),
                ],
            },
        ];
        let (suite, answer) = choose_ike(&proposals, None).unwrap();
        assert_eq!(suite.encr, Encr::AesCbc { key_bits: 256 });
        assert_eq!(suite.dh, DhGroup::Modp2048, "31 (X25519) is not AWS's");
        assert_eq!(answer.num, 2);
        assert_eq!(answer.transforms.len(), 4);
        assert!(choose_ike(&proposals[..1], None).is_none());
    }

    #[test]
    fn gcm_needs_no_integrity_and_esp_must_allow_no_esn() {
        let esp = |transforms| Proposal {
            num: 1,
            protocol: protocol::ESP,
            spi: vec![0xc1, 0, 0, 1],
            transforms,
        };
        let gcm = esp(vec![
            t(transform_type::ENCR, encr::AES_GCM_16, Some(128)),
            t(transform_type::ESN, esn::YES, None),
            t(transform_type::ESN, esn::NO, None),
        ]);
        let (transform, peer, answer) = choose_esp(&[gcm], 7, None).unwrap();
        assert_eq!(transform, Transform::AesGcm16 { key_bits: 128 });
        assert_eq!(peer, 0xc100_0001);
        assert_eq!(answer.spi, vec![0, 0, 0, 7]);
        assert_eq!(answer.transforms[1].id, esn::NO);
        let esn_only = esp(vec![
            t(transform_type::ENCR, encr::AES_GCM_16, Some(128)),
            t(transform_type::ESN, esn::YES, None),
        ]);
        assert!(choose_esp(&[esn_only], 7, None).is_none());
        // PFS: the group must be the one the KE payload carries.
        let pfs = esp(vec![
            t(transform_type::ENCR, encr::AES_CBC, Some(128)),
            t(transform_type::INTEG, integ::HMAC_SHA2_256_128, None),
            t(transform_type::DH, dh::MODP_2048, None),
        ]);
        assert!(choose_esp(std::slice::from_ref(&pfs), 7, Some(DhGroup::Modp2048)).is_some());
        assert!(choose_esp(std::slice::from_ref(&pfs), 7, None).is_none());
        assert_eq!(requested_group(&[pfs]), Some(DhGroup::Modp2048));
    }
}
