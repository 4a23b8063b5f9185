//! Access-token verification: HS256 (the default), ES256 and EdDSA, for a typical token.

// Benchmark set-up: a failure there is a bug to see at once.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jsonwebtoken::EncodingKey;
use presence::token::{mint, AccountSid, Algorithm, Config, Grants, Key, KeySet, VoiceGrant};
use presence::Identity;

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";

fn verification(criterion: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let keys = KeySet::new(
        vec![
            Key::new("SKhs", Algorithm::Hs256, SECRET).unwrap(),
            Key::new(
                "SKes",
                Algorithm::Es256,
                include_bytes!("../tests/data/es256_public.pem"),
            )
            .unwrap(),
            Key::new(
                "SKed",
                Algorithm::EdDsa,
                include_bytes!("../tests/data/eddsa_public.pem"),
            )
            .unwrap(),
        ],
        Config::default(),
    )
    .unwrap();
    let grants = Grants {
        identity: Identity::new("alice").unwrap(),
        voice: VoiceGrant {
            incoming: true,
            outgoing: None,
        },
    };
    let account = AccountSid::parse("AC0123456789abcdef0123456789abcdef").unwrap();
    let hs256 = mint(
        &keys.keys()[0],
        &grants,
        &account,
        Duration::from_secs(3600),
        now,
    )
    .unwrap();
    // ES256 and EdDSA tokens: the same claims with their own issuer, signed with the test
    // private keys.
    let claims: serde_json::Value = {
        let segment = hs256.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    let sign = |kid: &str, algorithm: jsonwebtoken::Algorithm, key: EncodingKey| {
        let mut claims = claims.clone();
        claims["iss"] = serde_json::json!(kid);
        let header = jsonwebtoken::Header {
            kid: Some(kid.to_owned()),
            ..jsonwebtoken::Header::new(algorithm)
        };
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let es256 = sign(
        "SKes",
        jsonwebtoken::Algorithm::ES256,
        EncodingKey::from_ec_pem(include_bytes!("../tests/data/es256_private.pem")).unwrap(),
    );
    let eddsa = sign(
        "SKed",
        jsonwebtoken::Algorithm::EdDSA,
        EncodingKey::from_ed_pem(include_bytes!("../tests/data/eddsa_private.pem")).unwrap(),
    );
    for token in [&hs256, &es256, &eddsa] {
        keys.verify(token, now).unwrap();
    }

    let mut group = criterion.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify HS256", |bench| {
        bench.iter(|| keys.verify(black_box(&hs256), now))
    });
    group.bench_function("verify ES256", |bench| {
        bench.iter(|| keys.verify(black_box(&es256), now))
    });
    group.bench_function("verify EdDSA", |bench| {
        bench.iter(|| keys.verify(black_box(&eddsa), now))
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
