//! Every decoder of untrusted bytes, fed arbitrary bytes and mutations of valid
//! encodings, returns an error or a value and never panics. (The same property a
//! fuzzer checks; this runs in every `cargo test`.)

use proptest::prelude::*;

use crate::control::{
    InviteCode, JoinFields, JoinRequest, RegionId, SignedOp, decode_bundle, encode_bundle,
};
use crate::envelope::{ChangeEnvelope, SignedFields};
use crate::id::{DocId, PartyName, Role};
use crate::identity::NodeSecret;

/// Valid encodings of every format, to mutate.
fn samples() -> Vec<Vec<u8>> {
    let dev = NodeSecret::generate().unwrap();
    let g = crate::testkit::genesis(&dev, "roc-a", Role::Roc);
    let region = RegionId(g.hash());
    let env = ChangeEnvelope::sign(
        SignedFields {
            region,
            doc: DocId::random().unwrap(),
            change_hash: [1; 32],
            author: dev.node_id(),
            control_heads: vec![g.hash()],
        },
        dev.signing_key(),
    )
    .unwrap();
    let join = JoinRequest::sign(
        JoinFields {
            region,
            invite_id: [2; 16],
            device: dev.node_id(),
            age_recipient: dev.age_recipient().to_string(),
            party: PartyName::new("roc-a").unwrap(),
            proof: [3; 32],
        },
        dev.signing_key(),
    )
    .unwrap();
    let code = InviteCode {
        region,
        inviter: dev.node_id(),
        invite_id: [4; 16],
        secret: [5; 32],
        expires: 0,
        party: PartyName::new("roc-a").unwrap(),
        role: Role::Roc,
        admin: true,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
    };
    vec![
        g.encode(),
        env.encode(),
        join.encode(),
        encode_bundle([&g]),
        code.encode().into_bytes(),
        dev.to_file_bytes(None).unwrap().to_vec(),
    ]
}

fn feed(bytes: &[u8]) {
    let _ = SignedOp::decode(bytes);
    let _ = SignedOp::decode_stored(bytes);
    let _ = ChangeEnvelope::decode(bytes);
    let _ = JoinRequest::decode(bytes);
    let _ = decode_bundle(bytes);
    let _ = InviteCode::decode(&String::from_utf8_lossy(bytes));
    let _ = NodeSecret::from_file_bytes(bytes, None);
    let _ = automerge::Change::from_bytes(bytes.to_vec());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        feed(&bytes);
    }

    #[test]
    fn mutated_valid_encodings(which in 0usize..6, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut s = samples().swap_remove(which);
        for (i, x) in flips {
            let at = i.index(s.len());
            s[at] ^= x;
        }
        feed(&s);
        let keep = cut.index(s.len() + 1);
        s.truncate(keep);
        feed(&s);
    }
}
