"""The milvus-lite test server (issue 14) starts, speaks Milvus's protocol with
pymilvus's MilvusClient, and reads its own writes (Strong consistency)."""
import pytest

from tests.conftest import small_collection

pytestmark = pytest.mark.slow


def test_the_test_server_answers_a_real_client(milvus_server):
    client = small_collection(milvus_server, "probe", consistency_level="Strong")
    try:
        client.insert("probe", [{"id": "a", "vector": [1, 0, 0, 0]}, {"id": "b", "vector": [0, 1, 0, 0]}])
        hits = client.search("probe", data=[[0, 1, 0, 0]], limit=2, anns_field="vector")
        assert [h["id"] for h in hits[0]] == ["b", "a"]
    finally:
        client.drop_collection("probe")
    client.close()
