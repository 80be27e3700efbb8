"""A JSON 1.1 round trip through boto3, a Kinesis client nobody here wrote,
signing with a listed key: python3 boto3_round_trip.py ENDPOINT KEY_ID SECRET [CA_PEM]."""
import sys

import boto3
import botocore.exceptions

endpoint, key_id, secret = sys.argv[1:4]
verify = sys.argv[4] if len(sys.argv) > 4 else None


def client(key_id, secret):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        verify=verify,
    )


kinesis = client(key_id, secret)
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
# a wrong secret and an unknown key are refused in AWS's codes, and write nothing
for bad, code in [
    (client(key_id, secret + "x"), "InvalidSignatureException"),
    (client("NOSUCHKEY0000000", secret), "UnrecognizedClientException"),
]:
    try:
        bad.put_record(StreamName="py", Data=b"nope", PartitionKey="k")
        raise SystemExit(f"a request that should fail with {code} succeeded")
    except botocore.exceptions.ClientError as error:
        assert error.response["Error"]["Code"] == code, error.response
after = 0
for shard in kinesis.list_shards(StreamName="py")["Shards"]:
    iterator = kinesis.get_shard_iterator(
        StreamName="py", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    after += len(kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"])
assert after == len(sent), (after, len(sent))
print("boto3 round trip ok:", len(received), "records")
