//! Whatever bytes arrive, the resolver answers, forwards or counts a drop:
//! it never panics (issue 18, bad input: malformed queries are counted and
//! dropped).

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use openvpc_dns::{EniKey, Outcome, VpcDns, VpcResolver};
use proptest::prelude::*;

fn resolver() -> VpcResolver {
    let mut cfg = VpcDns::new("us-east-1").unwrap();
    cfg.enable_dns_hostnames = true;
    cfg.set_address(
        Ipv4Addr::new(10, 0, 1, 5),
        Some(Ipv4Addr::new(203, 0, 113, 7)),
    );
    cfg.set_name(
        "lb.elb.us-east-1.amazonaws.com",
        vec![Ipv4Addr::new(10, 0, 1, 9)],
    )
    .unwrap();
    VpcResolver::new(cfg, 16)
}

fn valid_query() -> Vec<u8> {
    let mut m = Message::new(1, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii("ip-10-0-1-5.ec2.internal.").unwrap(),
        RecordType::A,
    ));
    m.to_vec().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut r = resolver();
        let out = r.handle(EniKey(1), &bytes, 0);
        if let Outcome::Drop(_) = out {
            prop_assert_eq!(r.counters().dropped_total(), 1);
        }
    }

    #[test]
    fn mutated_queries_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut q = valid_query();
        for (at, byte) in flips {
            let i = at % q.len();
            q[i] = byte;
        }
        q.truncate(cut % (q.len() + 1));
        let mut r = resolver();
        match r.handle(EniKey(1), &q, 0) {
            // Whatever it answers decodes.
            Outcome::Answer(bytes) => prop_assert!(Message::from_vec(&bytes).is_ok()),
            Outcome::Forward(fwd) => {
                // Relaying garbage back is safe too.
                let _ = r.relay(&q, &fwd, 0);
            }
            Outcome::Drop(_) => prop_assert_eq!(r.counters().dropped_total(), 1),
        }
    }
}
