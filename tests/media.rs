//! The prompt cache through the built binary: a WAV served by the test's own HTTP origin is
//! fetched once, transcoded to 8 kHz µ-law, served from `/v1/media/{id}` with a strong ETag, and
//! answered from the cache the second time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::Tandem;

/// 0.25 s of a 440 Hz tone as a 16 kHz mono 16-bit PCM WAV.
fn tone_wav() -> Vec<u8> {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate / 4)
        .map(|n| ((n as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

/// A one-file HTTP origin on 127.0.0.1 that counts its requests.
fn origin(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            served.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nCache-Control: max-age=600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (port, count)
}

#[test]
fn a_prompt_is_fetched_once_transcoded_and_served_from_the_cache() {
    let tandem = Tandem::start();
    let key = std::fs::read_to_string(tandem.api_key_path()).unwrap();
    let (port, origin_requests) = origin(tone_wav());
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{}", tandem.http_port);
    let post = || -> Value {
        let response = client
            .post(format!("{base}/v1/media"))
            .bearer_auth(key.trim())
            .json(&json!({"url": format!("http://127.0.0.1:{port}/tone.wav")}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };

    let first = post();
    assert_eq!(first["cache"], "miss", "{first}");
    assert_eq!(first["content_type"], "audio/basic");
    assert_eq!(first["sample_rate"], 8000);
    assert_eq!(first["duration_ms"], 250);
    let second = post();
    assert_eq!(second["cache"], "hit", "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(origin_requests.load(Ordering::SeqCst), 1);

    let audio = client
        .get(format!("{base}{}", first["url"].as_str().unwrap()))
        .bearer_auth(key.trim())
        .send()
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/basic");
    let etag = audio.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "strong ETag: {etag}");
    assert_eq!(
        audio.bytes().unwrap().len(),
        2000,
        "0.25 s at 8000 µ-law bytes/s"
    );

    // The API key guards /v1/media like every /v1 route.
    let anonymous = client
        .post(format!("{base}/v1/media"))
        .json(&json!({"url": "x"}))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tandem_media_cache_hits_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_media_cache_misses_total 1"),
        "{metrics}"
    );
}
