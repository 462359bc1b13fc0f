//! librdkafka client settings derived from a pipeline's `kafka` section:
//! brokers, TLS/SASL, and the allow-listed tuning properties.
//!
//! Invariant: a property from YAML reaches librdkafka only if it is on
//! [`ALLOWED_PROPERTIES`]. Properties that load code or run commands
//! (`plugin.library.paths`, `sasl.kerberos.kinit.cmd`, the lesson of
//! CVE-2023-25194) and properties tidewater itself owns because its delivery
//! guarantee depends on them (`acks`, `enable.idempotence`, offsets) are refused
//! with a message that says which of the two it is.

use rdkafka::ClientConfig;

use crate::config::model::{KafkaConfig, KafkaProtocol, SaslMechanism};

/// Tuning properties a pipeline may set in `kafka.properties`.
pub const ALLOWED_PROPERTIES: &[&str] = &[
    "api.version.request.timeout.ms",
    "batch.num.messages",
    "batch.size",
    "broker.address.family",
    "client.id",
    "client.rack",
    "compression.level",
    "connections.max.idle.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    "heartbeat.interval.ms",
    "linger.ms",
    "log.connection.close",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.max.bytes",
    "message.timeout.ms",
    "metadata.max.age.ms",
    "partition.assignment.strategy",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "request.timeout.ms",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "session.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.timeout.ms",
    "statistics.interval.ms",
    "topic.metadata.refresh.interval.ms",
];

/// Properties tidewater sets itself; overriding them would break a guarantee
/// or bypass the `security` section.
const OWNED_PROPERTIES: &[&str] = &[
    "acks",
    "auto.offset.reset",
    "bootstrap.servers",
    "compression.codec",
    "compression.type",
    "delivery.timeout.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "enable.partition.eof",
    "group.id",
    "isolation.level",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "message.send.max.retries",
    "metadata.broker.list",
    "request.required.acks",
    "retries",
    "security.protocol",
    "transactional.id",
];

/// Properties that make librdkafka load a library, run a command, or read or
/// write arbitrary files.
const DANGEROUS_PROPERTIES: &[&str] = &[
    "plugin.library.paths",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.keytab",
    "ssl.engine.location",
    "ssl.engine.id",
    "ssl_engine_callback_data",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.config",
    "debug",
];

/// Why a property from YAML is refused, or `None` when it is allowed.
pub fn refuse_property(name: &str) -> Option<String> {
    if ALLOWED_PROPERTIES.contains(&name) {
        return None;
    }
    if DANGEROUS_PROPERTIES.contains(&name) {
        return Some(format!(
            "`{name}` is refused: it lets librdkafka load code, run a command or touch files"
        ));
    }
    if OWNED_PROPERTIES.contains(&name) {
        return Some(format!(
            "`{name}` is set by tidewater itself (its delivery guarantee or the `kafka` section depends on it)"
        ));
    }
    if name.starts_with("ssl.") || name.starts_with("sasl.") {
        return Some(format!(
            "`{name}` is refused: configure TLS and SASL in `kafka.security`"
        ));
    }
    Some(format!(
        "`{name}` is not an allowed librdkafka property; allowed: {}",
        ALLOWED_PROPERTIES.join(", ")
    ))
}

/// Splits `host:port,host:port`. Errors name the faulty entry.
pub fn parse_brokers(brokers: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for raw in brokers.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(
                "empty broker entry; write `host:port`, several separated by commas".into(),
            );
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(format!("broker `{entry}` has no port; write `host:port`"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("broker `{entry}` has no valid host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => out.push((host.to_string(), p)),
            _ => {
                return Err(format!(
                    "broker `{entry}`: `{port}` is not a port (1-65535)"
                ));
            }
        }
    }
    Ok(out)
}

/// The client settings shared by producers, consumers and admin clients.
/// Callers add the role-specific properties on top.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", cfg.brokers.trim());
    if let Some(sec) = &cfg.security {
        let protocol = match sec.protocol {
            KafkaProtocol::Plaintext => "plaintext",
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        };
        cc.set("security.protocol", protocol);
        if let Some(mechanism) = sec.sasl_mechanism {
            let m = match mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            cc.set("sasl.mechanism", m);
        }
        if let Some(user) = &sec.username {
            cc.set("sasl.username", user);
        }
        if let Some(password) = &sec.password {
            cc.set("sasl.password", password.expose());
        }
        if let Some(ca) = &sec.ca_file {
            cc.set("ssl.ca.location", ca);
        }
        cc.set(
            "ssl.endpoint.identification.algorithm",
            if sec.verify_hostname { "https" } else { "none" },
        );
    }
    for (name, value) in &cfg.properties {
        if refuse_property(name).is_none() {
            cc.set(name, value.to_string());
        }
    }
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_and_owned_properties_are_refused_with_a_reason() {
        assert!(refuse_property("linger.ms").is_none());
        assert!(
            refuse_property("plugin.library.paths")
                .unwrap()
                .contains("load code")
        );
        assert!(
            refuse_property("sasl.kerberos.kinit.cmd")
                .unwrap()
                .contains("run a command")
        );
        assert!(
            refuse_property("acks")
                .unwrap()
                .contains("set by tidewater")
        );
        assert!(
            refuse_property("enable.idempotence")
                .unwrap()
                .contains("set by tidewater")
        );
        assert!(
            refuse_property("ssl.key.location")
                .unwrap()
                .contains("kafka.security")
        );
        assert!(
            refuse_property("lingerms")
                .unwrap()
                .contains("not an allowed")
        );
    }

    #[test]
    fn brokers_parse_or_name_the_bad_entry() {
        assert_eq!(
            parse_brokers("a:9092, b:9093").unwrap(),
            vec![("a".to_string(), 9092), ("b".to_string(), 9093)]
        );
        assert_eq!(
            parse_brokers("[::1]:9092").unwrap(),
            vec![("::1".to_string(), 9092)]
        );
        assert!(parse_brokers("a").unwrap_err().contains("`a` has no port"));
        assert!(
            parse_brokers("a:x")
                .unwrap_err()
                .contains("`x` is not a port")
        );
        assert!(parse_brokers("a:0").unwrap_err().contains("not a port"));
        assert!(
            parse_brokers("a:1,,b:2")
                .unwrap_err()
                .contains("empty broker entry")
        );
    }

    #[test]
    fn security_and_properties_reach_librdkafka() {
        use crate::config::model::{KafkaConfig, KafkaSecurity, PropertyValue, Secret};
        let mut k = KafkaConfig::with_brokers("b1:9093, b2:9093");
        k.security = Some(KafkaSecurity {
            protocol: KafkaProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("svc".into()),
            password: Some(Secret::new("pw")),
            ca_file: Some("/etc/ca.pem".into()),
            verify_hostname: true,
        });
        k.properties
            .insert("linger.ms".into(), PropertyValue::Integer(5));
        k.properties.insert(
            "plugin.library.paths".into(),
            PropertyValue::Text("/x.so".into()),
        );
        let cc = client_config(&k);
        assert_eq!(cc.get("bootstrap.servers"), Some("b1:9093, b2:9093"));
        assert_eq!(cc.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cc.get("sasl.username"), Some("svc"));
        assert_eq!(cc.get("sasl.password"), Some("pw"));
        assert_eq!(cc.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(
            cc.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert_eq!(cc.get("linger.ms"), Some("5"));
        assert_eq!(
            cc.get("plugin.library.paths"),
            None,
            "refused properties never reach librdkafka"
        );
    }
}
