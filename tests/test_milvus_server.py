"""The milvus-lite test server (issue 14) starts, speaks Milvus's protocol with
pymilvus's MilvusClient, and reads its own writes (Strong consistency)."""
import pytest

pytestmark = pytest.mark.slow


def test_the_test_server_answers_a_real_client(milvus_server):
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri="http://" + milvus_server.removeprefix("milvus://"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
    client.create_collection("probe", schema=schema, index_params=index, consistency_level="Strong")
    try:
        client.insert("probe", [{"id": "a", "vector": [1, 0, 0, 0]}, {"id": "b", "vector": [0, 1, 0, 0]}])
        hits = client.search("probe", data=[[0, 1, 0, 0]], limit=2, anns_field="vector")
        assert [h["id"] for h in hits[0]] == ["b", "a"]
    finally:
        client.drop_collection("probe")
    client.close()
