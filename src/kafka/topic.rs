//! Topic names: `<topic_prefix>.<schema>.<table>`, one topic per table.
//!
//! Kafka topic names may only hold `[A-Za-z0-9._-]` and at most 249
//! characters; table names may hold anything. Like Debezium, every other
//! character becomes `_`. Two tables that map to the same topic would mix their
//! events, so `tidewater check` refuses such a pipeline (see
//! [`crate::config`]); this module only computes names.

use crate::event::table_id::TableId;

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// The topic of a table's change events.
pub fn table_topic(prefix: &str, table: &TableId) -> String {
    format!(
        "{}.{}.{}",
        sanitize(prefix),
        sanitize(&table.schema),
        sanitize(&table.name)
    )
}

/// Replaces every character Kafka does not allow in a topic name with `_`.
pub fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks a topic name Kafka would refuse; `None` when it is fine.
pub fn invalid_topic(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not a valid topic name"));
    }
    if name.len() > MAX_TOPIC_LEN {
        return Some(format!(
            "topic name is {} characters long; Kafka allows at most {MAX_TOPIC_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "`{c}` is not allowed in a topic name (only letters, digits, `.`, `_`, `-`)"
        ));
    }
    None
}

/// Creates `topic` with `partitions` partitions unless it exists (the
/// broker's default replication factor). Returns an error text naming the
/// broker's refusal.
pub async fn ensure_topic(
    client: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    ensure_topic_with(client, topic, partitions, -1, &[]).await
}

/// [`ensure_topic`] with a replication factor (`-1`: the broker's default)
/// and topic configuration entries.
pub async fn ensure_topic_with(
    client: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
    config: &[(&str, &str)],
) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| e.to_string())?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in config {
        new_topic = new_topic.set(k, v);
    }
    let results = admin
        .create_topics(
            &[new_topic],
            &AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30))),
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(code.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_like_debezium() {
        assert_eq!(
            table_topic("shop", &TableId::new("public", "orders")),
            "shop.public.orders"
        );
        assert_eq!(
            table_topic("shop", &TableId::new("public", "Order Items")),
            "shop.public.Order_Items"
        );
        assert_eq!(
            table_topic("shop", &TableId::new("sales.eu", "zürich")),
            "shop.sales.eu.z_rich"
        );
    }

    #[test]
    fn invalid_names_are_explained() {
        assert!(invalid_topic("ok.topic-1_x").is_none());
        assert!(invalid_topic("").unwrap().contains("empty"));
        assert!(invalid_topic("a b").unwrap().contains("` ` is not allowed"));
        assert!(
            invalid_topic(&"x".repeat(250))
                .unwrap()
                .contains("at most 249")
        );
    }
}
