//! `check-config` output: the resolved configuration written back in the file's own schema,
//! every default spelled out and every secret replaced by [`REDACTED`].

use sip::config::ListenTransport;

use super::file::{self, File};
use super::{AppConfig, ConfigError, KeyMaterial, REDACTED};

/// The resolved configuration as TOML.
pub(super) fn to_toml(config: &AppConfig) -> Result<String, ConfigError> {
    Ok(toml::to_string(&to_file(config))?)
}

fn to_file(config: &AppConfig) -> File {
    let redacted = || Some(REDACTED.to_owned());
    let sip = &config.sip;
    File {
        data_dir: Some(config.data_dir.clone()),
        sip: file::Sip {
            listen: Some(
                sip.listen
                    .iter()
                    .map(|listen| {
                        let transport = match listen.transport {
                            ListenTransport::Udp => "udp",
                            ListenTransport::Tcp => "tcp",
                        };
                        format!("{transport}:{}", listen.addr)
                    })
                    .collect(),
            ),
            advertised_address: sip.advertised_address.map(|address| address.to_string()),
            t1_ms: Some(millis(sip.timers.t1)),
            t2_ms: Some(millis(sip.timers.t2)),
            t4_ms: Some(millis(sip.timers.t4)),
            max_message_size: Some(sip.max_message_size as u64),
            tcp_idle_timeout_s: Some(sip.tcp_idle_timeout.as_secs()),
            max_connections_per_ip: Some(sip.max_connections_per_ip as u64),
            realm: Some(sip.realm.clone()),
            digest_algorithms: Some(
                sip.digest_algorithms
                    .iter()
                    .map(|algorithm| algorithm.as_str().to_owned())
                    .collect(),
            ),
            rate_limit_per_source: Some(sip.rate_limit_per_source.map_or(0, u64::from)),
            min_expires_s: Some(sip.registration.min_expires.as_secs()),
            max_expires_s: Some(sip.registration.max_expires.as_secs()),
        },
        http: file::Http {
            listen: Some(config.http.listen.to_string()),
            api_key: config.http.api_key.as_ref().and(redacted()),
            ..file::Http::default()
        },
        auth: file::Auth {
            keys: config
                .auth_keys
                .iter()
                .map(|key| {
                    let (secret, public_key_file) = match &key.material {
                        KeyMaterial::Secret(_) => (redacted(), None),
                        KeyMaterial::PublicKey { path, .. } => (None, Some(path.clone())),
                    };
                    file::AuthKey {
                        id: Some(key.id.clone()),
                        algorithm: Some(key.algorithm),
                        secret,
                        public_key_file,
                        ..file::AuthKey::default()
                    }
                })
                .collect(),
        },
        media: file::Media {
            cache_dir: Some(config.media.cache_dir.clone()),
            cache_max_bytes: Some(config.media.cache_max_bytes),
            rtp_ports: Some(config.media.rtp_ports.to_string()),
        },
        account: file::Account {
            sid: Some(config.router.account.sid.clone()),
            auth_token: config.router.account.auth_token.as_ref().and(redacted()),
            ..file::Account::default()
        },
        numbers: config
            .router
            .numbers
            .iter()
            .map(|number| file::Number {
                number: Some(number.number.clone()),
                voice_url: Some(number.voice_url.clone()),
                voice_method: Some(match number.voice_method {
                    router::config::WebhookMethod::Get => file::VoiceMethod::Get,
                    router::config::WebhookMethod::Post => file::VoiceMethod::Post,
                }),
                voice_fallback_url: number.voice_fallback_url.clone(),
                status_callback: number.status_callback.clone(),
            })
            .collect(),
        // Always written, so that an empty list reads back as "no trunks" rather than as the
        // default local trunk.
        trunks: Some(
            sip.trunks
                .iter()
                .map(|trunk| file::Trunk {
                    name: Some(trunk.name.clone()),
                    allow: Some(trunk.allow.iter().map(ToString::to_string).collect()),
                    outbound_uri: trunk.outbound_uri.as_ref().map(ToString::to_string),
                })
                .collect(),
        ),
        sip_users: sip
            .users
            .iter()
            .map(|user| file::SipUser {
                username: Some(user.username.clone()),
                password: redacted(),
                ..file::SipUser::default()
            })
            .collect(),
        presence: file::Presence {
            max_devices_per_identity: Some(
                config.presence.registry.max_devices_per_identity as u64,
            ),
            max_subscriptions_per_device: Some(
                config.presence.registry.max_subscriptions_per_device as u64,
            ),
            max_connections_per_ip: Some(config.presence.gateway.max_connections_per_ip as u64),
            listen_timeout_s: Some(config.presence.gateway.listen_timeout.as_secs()),
            max_message_bytes: Some(config.presence.gateway.max_message_bytes as u64),
            outbound_queue: Some(config.presence.gateway.outbound_queue as u64),
            ping_interval_s: Some(config.presence.gateway.ping_interval.as_secs()),
            dead_after_s: Some(config.presence.gateway.dead_after.as_secs()),
        },
        log: file::Log {
            format: Some(config.log.format),
        },
        drain: file::Drain {
            grace_s: Some(config.drain_grace.as_secs()),
        },
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
