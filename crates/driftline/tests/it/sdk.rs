//! Every operation of the Kinesis API through the AWS SDK for Rust.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, ShardFilter, ShardFilterType, ShardIteratorType,
    StreamMode, StreamModeDetails,
};

use crate::util::{runtime, sdk_client, Server};

fn code<E: ProvideErrorMetadata>(
    error: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> String {
    error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("not a service error")
        .to_string()
}

#[test]
fn stream_lifecycle_tags_and_retention_through_the_sdk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let kinesis = sdk_client(&server.endpoint);
    runtime().block_on(async {
        kinesis
            .create_stream()
            .stream_name("orders")
            .shard_count(3)
            .send()
            .await
            .expect("create");
        kinesis
            .create_stream()
            .stream_name("clicks")
            .stream_mode_details(
                StreamModeDetails::builder()
                    .stream_mode(StreamMode::OnDemand)
                    .build()
                    .expect("mode"),
            )
            .send()
            .await
            .expect("create on-demand");
        let again = kinesis
            .create_stream()
            .stream_name("orders")
            .shard_count(1)
            .send()
            .await
            .expect_err("duplicate");
        assert_eq!(code(&again), "ResourceInUseException");
        let bad_name = kinesis
            .create_stream()
            .stream_name("no spaces")
            .shard_count(1)
            .send()
            .await
            .expect_err("bad name");
        assert_eq!(code(&bad_name), "ValidationException");

        let listed = kinesis.list_streams().send().await.expect("list");
        assert_eq!(listed.stream_names(), ["clicks", "orders"]);
        let first_page = kinesis
            .list_streams()
            .limit(1)
            .send()
            .await
            .expect("list page");
        assert!(first_page.has_more_streams());
        let second_page = kinesis
            .list_streams()
            .next_token(first_page.next_token().expect("token"))
            .send()
            .await
            .expect("page 2");
        assert_eq!(second_page.stream_names(), ["orders"]);

        let described = kinesis
            .describe_stream()
            .stream_name("orders")
            .send()
            .await
            .expect("describe");
        let description = described.stream_description().expect("description");
        assert_eq!(description.shards().len(), 3);
        assert_eq!(description.retention_period_hours(), 24);
        assert_eq!(description.stream_status().as_str(), "ACTIVE");
        let summary = kinesis
            .describe_stream_summary()
            .stream_name("clicks")
            .send()
            .await
            .expect("summary");
        let summary = summary.stream_description_summary().expect("summary");
        assert_eq!(summary.open_shard_count(), 4);
        assert_eq!(
            summary
                .stream_mode_details()
                .map(|m| m.stream_mode().as_str()),
            Some("ON_DEMAND")
        );

        kinesis
            .increase_stream_retention_period()
            .stream_name("orders")
            .retention_period_hours(48)
            .send()
            .await
            .expect("increase");
        let shorter = kinesis
            .increase_stream_retention_period()
            .stream_name("orders")
            .retention_period_hours(30)
            .send()
            .await
            .expect_err("increase to less");
        assert_eq!(code(&shorter), "InvalidArgumentException");
        kinesis
            .decrease_stream_retention_period()
            .stream_name("orders")
            .retention_period_hours(36)
            .send()
            .await
            .expect("decrease");
        let too_short = kinesis
            .decrease_stream_retention_period()
            .stream_name("orders")
            .retention_period_hours(1)
            .send()
            .await
            .expect_err("below minimum");
        assert_eq!(code(&too_short), "InvalidArgumentException");
        let summary = kinesis
            .describe_stream_summary()
            .stream_name("orders")
            .send()
            .await
            .expect("summary");
        assert_eq!(
            summary
                .stream_description_summary()
                .map(|s| s.retention_period_hours()),
            Some(36)
        );

        kinesis
            .add_tags_to_stream()
            .stream_name("orders")
            .tags("team", "ml")
            .tags("env", "test")
            .send()
            .await
            .expect("tag");
        let tags = kinesis
            .list_tags_for_stream()
            .stream_name("orders")
            .send()
            .await
            .expect("list tags");
        let keys: Vec<&str> = tags.tags().iter().map(|t| t.key()).collect();
        assert_eq!(keys, ["env", "team"]);
        kinesis
            .remove_tags_from_stream()
            .stream_name("orders")
            .tag_keys("env")
            .send()
            .await
            .expect("untag");
        let tags = kinesis
            .list_tags_for_stream()
            .stream_name("orders")
            .send()
            .await
            .expect("list tags");
        assert_eq!(tags.tags().len(), 1);
        assert_eq!(tags.tags()[0].value(), Some("ml"));

        kinesis
            .delete_stream()
            .stream_name("clicks")
            .send()
            .await
            .expect("delete");
        let gone = kinesis
            .describe_stream()
            .stream_name("clicks")
            .send()
            .await
            .expect_err("deleted");
        assert_eq!(code(&gone), "ResourceNotFoundException");
        let gone = kinesis
            .delete_stream()
            .stream_name("clicks")
            .send()
            .await
            .expect_err("deleted twice");
        assert_eq!(code(&gone), "ResourceNotFoundException");
    });
}

#[test]
fn records_round_trip_with_every_iterator_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let kinesis = sdk_client(&server.endpoint);
    runtime().block_on(async {
        kinesis
            .create_stream()
            .stream_name("s")
            .shard_count(2)
            .send()
            .await
            .expect("create");
        // ExplicitHashKey 0 routes to the first shard whatever the partition key.
        let first = kinesis
            .put_record()
            .stream_name("s")
            .partition_key("anything")
            .explicit_hash_key("0")
            .data(Blob::new(b"r0".to_vec()))
            .send()
            .await
            .expect("put");
        assert_eq!(first.shard_id(), "shardId-000000000000");
        let entries: Vec<PutRecordsRequestEntry> = (1..=20)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key("p")
                    .explicit_hash_key("1")
                    .data(Blob::new(format!("r{i}").into_bytes()))
                    .build()
                    .expect("entry")
            })
            .collect();
        let batch = kinesis
            .put_records()
            .stream_name("s")
            .set_records(Some(entries))
            .send()
            .await
            .expect("put records");
        assert_eq!(batch.failed_record_count(), Some(0));
        let sequence_numbers: Vec<u128> = batch
            .records()
            .iter()
            .map(|r| r.sequence_number().expect("seq").parse().expect("decimal"))
            .collect();
        assert!(
            sequence_numbers.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing"
        );
        let first_seq = first.sequence_number().to_string();

        let data_of = |records: &[aws_sdk_kinesis::types::Record]| -> Vec<String> {
            records
                .iter()
                .map(|r| String::from_utf8_lossy(r.data().as_ref()).to_string())
                .collect()
        };
        let iterator = |kind: ShardIteratorType| {
            kinesis
                .get_shard_iterator()
                .stream_name("s")
                .shard_id("shardId-000000000000")
                .shard_iterator_type(kind)
        };

        let trim = iterator(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("trim")
            .shard_iterator()
            .expect("it")
            .to_string();
        let page = kinesis
            .get_records()
            .shard_iterator(&trim)
            .limit(5)
            .send()
            .await
            .expect("get");
        assert_eq!(data_of(page.records()), ["r0", "r1", "r2", "r3", "r4"]);
        assert!(page.millis_behind_latest().is_some());
        let rest = kinesis
            .get_records()
            .shard_iterator(page.next_shard_iterator().expect("next"))
            .send()
            .await
            .expect("get");
        assert_eq!(rest.records().len(), 16);
        assert_eq!(rest.millis_behind_latest(), Some(0));
        let record = &rest.records()[0];
        assert_eq!(record.partition_key(), Some("p"));
        assert!(record.approximate_arrival_timestamp().is_some());

        let at = iterator(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&first_seq)
            .send()
            .await
            .expect("at");
        let page = kinesis
            .get_records()
            .shard_iterator(at.shard_iterator().expect("it"))
            .limit(2)
            .send()
            .await
            .expect("get");
        assert_eq!(data_of(page.records()), ["r0", "r1"]);
        let after = iterator(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(&first_seq)
            .send()
            .await
            .expect("after");
        let page = kinesis
            .get_records()
            .shard_iterator(after.shard_iterator().expect("it"))
            .limit(1)
            .send()
            .await
            .expect("get");
        assert_eq!(data_of(page.records()), ["r1"]);

        let latest = iterator(ShardIteratorType::Latest)
            .send()
            .await
            .expect("latest")
            .shard_iterator()
            .expect("it")
            .to_string();
        let empty = kinesis
            .get_records()
            .shard_iterator(&latest)
            .send()
            .await
            .expect("get");
        assert!(empty.records().is_empty());
        kinesis
            .put_record()
            .stream_name("s")
            .partition_key("x")
            .explicit_hash_key("2")
            .data(Blob::new(b"late".to_vec()))
            .send()
            .await
            .expect("put");
        let fresh = kinesis
            .get_records()
            .shard_iterator(empty.next_shard_iterator().expect("next"))
            .send()
            .await
            .expect("get");
        assert_eq!(data_of(fresh.records()), ["late"]);

        let at_time = iterator(ShardIteratorType::AtTimestamp)
            .timestamp(DateTime::from_secs(0))
            .send()
            .await
            .expect("at timestamp");
        let page = kinesis
            .get_records()
            .shard_iterator(at_time.shard_iterator().expect("it"))
            .limit(1)
            .send()
            .await
            .expect("get");
        assert_eq!(data_of(page.records()), ["r0"]);
        let future = iterator(ShardIteratorType::AtTimestamp)
            .timestamp(DateTime::from_secs(4_000_000_000))
            .send()
            .await
            .expect_err("future timestamp");
        assert_eq!(code(&future), "InvalidArgumentException");

        // A sequence number of the other shard is refused for this one.
        let other = kinesis
            .put_record()
            .stream_name("s")
            .partition_key("y")
            .explicit_hash_key(u128::MAX.to_string())
            .data(Blob::new(b"o".to_vec()))
            .send()
            .await
            .expect("put");
        assert_eq!(other.shard_id(), "shardId-000000000001");
        let wrong = iterator(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(other.sequence_number())
            .send()
            .await
            .expect_err("foreign seq");
        assert_eq!(code(&wrong), "InvalidArgumentException");

        let forged = kinesis
            .get_records()
            .shard_iterator("AAAAforged")
            .send()
            .await
            .expect_err("forged");
        assert_eq!(code(&forged), "InvalidArgumentException");
        let missing = kinesis
            .put_record()
            .stream_name("nope")
            .partition_key("k")
            .data(Blob::new(b"x".to_vec()))
            .send()
            .await
            .expect_err("missing stream");
        assert_eq!(code(&missing), "ResourceNotFoundException");
    });
}

#[test]
fn oversize_records_and_batches_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let kinesis = sdk_client(&server.endpoint);
    runtime().block_on(async {
        kinesis
            .create_stream()
            .stream_name("s")
            .shard_count(1)
            .send()
            .await
            .expect("create");
        let huge = kinesis
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(vec![0u8; 1024 * 1024 + 1]))
            .send()
            .await
            .expect_err("oversize record");
        assert_eq!(code(&huge), "ValidationException");
        let entry = |size: usize| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(vec![1u8; size]))
                .build()
                .expect("entry")
        };
        let too_many = kinesis
            .put_records()
            .stream_name("s")
            .set_records(Some((0..501).map(|_| entry(1)).collect()))
            .send()
            .await
            .expect_err("501 records");
        assert_eq!(code(&too_many), "ValidationException");
        let too_big = kinesis
            .put_records()
            .stream_name("s")
            .set_records(Some((0..6).map(|_| entry(1000 * 1000)).collect()))
            .send()
            .await
            .expect_err("6 MB batch");
        assert_eq!(code(&too_big), "InvalidArgumentException");
        let long_key = kinesis
            .put_record()
            .stream_name("s")
            .partition_key("k".repeat(257))
            .data(Blob::new(b"x".to_vec()))
            .send()
            .await
            .expect_err("key too long");
        assert_eq!(code(&long_key), "ValidationException");
        // nothing of the refused requests reached the log
        let it = kinesis
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("it");
        let page = kinesis
            .get_records()
            .shard_iterator(it.shard_iterator().expect("it"))
            .send()
            .await
            .expect("get");
        assert!(page.records().is_empty());
    });
}

#[test]
fn resharding_keeps_parents_readable_and_children_know_their_parents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let kinesis = sdk_client(&server.endpoint);
    runtime().block_on(async {
        kinesis
            .create_stream()
            .stream_name("s")
            .shard_count(2)
            .send()
            .await
            .expect("create");
        let put = |key: &'static str, data: &'static str| {
            kinesis
                .put_record()
                .stream_name("s")
                .partition_key(key)
                .explicit_hash_key("5")
                .data(Blob::new(data.as_bytes().to_vec()))
                .send()
        };
        put("a", "before-split").await.expect("put");
        let it = kinesis
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("it");
        let parent_iterator = it.shard_iterator().expect("it").to_string();

        kinesis
            .split_shard()
            .stream_name("s")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("85070591730234615865843651857942052864")
            .send()
            .await
            .expect("split");
        let bad_split = kinesis
            .split_shard()
            .stream_name("s")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("10")
            .send()
            .await
            .expect_err("closed parent");
        assert_eq!(code(&bad_split), "ResourceInUseException");
        let put_after = put("a", "after-split").await.expect("put");
        assert_eq!(put_after.shard_id(), "shardId-000000000002");

        // the parent reads to its end, then hands over to its children
        let page = kinesis
            .get_records()
            .shard_iterator(&parent_iterator)
            .send()
            .await
            .expect("get parent");
        assert_eq!(page.records().len(), 1);
        assert!(
            page.next_shard_iterator().is_none(),
            "closed shard ends with a null iterator"
        );
        let children: Vec<&str> = page.child_shards().iter().map(|c| c.shard_id()).collect();
        assert_eq!(children, ["shardId-000000000002", "shardId-000000000003"]);
        assert_eq!(
            page.child_shards()[0].parent_shards(),
            ["shardId-000000000000"]
        );

        let shards = kinesis
            .list_shards()
            .stream_name("s")
            .send()
            .await
            .expect("list shards");
        assert_eq!(shards.shards().len(), 4);
        let closed = &shards.shards()[0];
        assert!(closed
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some());
        assert_eq!(
            shards.shards()[2].parent_shard_id(),
            Some("shardId-000000000000")
        );

        kinesis
            .merge_shards()
            .stream_name("s")
            .shard_to_merge("shardId-000000000003")
            .adjacent_shard_to_merge("shardId-000000000001")
            .send()
            .await
            .expect("merge");
        let not_adjacent = kinesis
            .merge_shards()
            .stream_name("s")
            .shard_to_merge("shardId-000000000002")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await
            .expect_err("self merge");
        assert_eq!(code(&not_adjacent), "InvalidArgumentException");
        let shards = kinesis
            .list_shards()
            .stream_name("s")
            .send()
            .await
            .expect("list shards");
        let merged = shards.shards().last().expect("merged");
        assert_eq!(merged.parent_shard_id(), Some("shardId-000000000003"));
        assert_eq!(
            merged.adjacent_parent_shard_id(),
            Some("shardId-000000000001")
        );

        let updated = kinesis
            .update_shard_count()
            .stream_name("s")
            .target_shard_count(4)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .expect("update");
        assert_eq!(updated.current_shard_count(), Some(2));
        let open = kinesis
            .list_shards()
            .stream_name("s")
            .shard_filter(
                ShardFilter::builder()
                    .r#type(ShardFilterType::AtLatest)
                    .build()
                    .expect("filter"),
            )
            .send()
            .await
            .expect("open shards");
        assert_eq!(open.shards().len(), 4);
        let too_far = kinesis
            .update_shard_count()
            .stream_name("s")
            .target_shard_count(20)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .expect_err("more than double");
        assert_eq!(code(&too_far), "InvalidArgumentException");

        // ListShards pages with NextToken, which must not come with StreamName
        let page = kinesis
            .list_shards()
            .stream_name("s")
            .max_results(3)
            .send()
            .await
            .expect("page 1");
        assert_eq!(page.shards().len(), 3);
        let token = page.next_token().expect("token").to_string();
        let both = kinesis
            .list_shards()
            .stream_name("s")
            .next_token(&token)
            .send()
            .await
            .expect_err("token and name");
        assert_eq!(code(&both), "InvalidArgumentException");
        let mut seen = page.shards().len();
        let mut next = Some(token);
        while let Some(token) = next {
            let page = kinesis
                .list_shards()
                .next_token(token)
                .max_results(3)
                .send()
                .await
                .expect("next page");
            seen += page.shards().len();
            next = page.next_token().map(str::to_string);
        }
        assert_eq!(seen, 9);

        // every record is still readable, each once
        let mut total = 0;
        for shard in kinesis
            .list_shards()
            .stream_name("s")
            .send()
            .await
            .expect("shards")
            .shards()
        {
            let it = kinesis
                .get_shard_iterator()
                .stream_name("s")
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("it");
            let page = kinesis
                .get_records()
                .shard_iterator(it.shard_iterator().expect("it"))
                .send()
                .await
                .expect("get");
            total += page.records().len();
        }
        assert_eq!(total, 2);
    });
}
