"""A JSON 1.1 round trip through boto3, a Kinesis client nobody here wrote."""
import sys

import boto3

endpoint = sys.argv[1]
kinesis = boto3.client(
    "kinesis",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
kinesis.create_stream(StreamName="py", ShardCount=2)
kinesis.get_waiter("stream_exists").wait(StreamName="py", WaiterConfig={"Delay": 1, "MaxAttempts": 5})
sent = [f"record-{i}".encode() for i in range(50)]
result = kinesis.put_records(
    StreamName="py",
    Records=[{"Data": d, "PartitionKey": f"key-{i % 7}"} for i, d in enumerate(sent)],
)
assert result["FailedRecordCount"] == 0, result
received = []
for shard in kinesis.list_shards(StreamName="py")["Shards"]:
    iterator = kinesis.get_shard_iterator(
        StreamName="py", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
    received += [r["Data"] for r in page["Records"]]
    for record in page["Records"]:
        assert record["ApproximateArrivalTimestamp"].year >= 2024
assert sorted(received) == sorted(sent), (len(received), len(sent))
try:
    kinesis.describe_stream(StreamName="nope")
    raise SystemExit("describe of a missing stream succeeded")
except kinesis.exceptions.ResourceNotFoundException as error:
    assert "nope" in str(error)
print("boto3 round trip ok:", len(received), "records")
