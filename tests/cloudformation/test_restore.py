"""The restore path, rehearsed against moto: data written through the service on a stack survives a
point-in-time restore of the table done as a parameter change, and a stack rebuilt on the retained table
and bucket.

Each service here is configured from the stack's outputs only (``BucketName``, ``TableName``,
``UploadRoleArn``), as an operator configures one, so a restore that left any output pointing at the old
table would read the wrong data. moto restores a table to "now" (it keeps no history), so the mistake is
made after the restore copy: the original table holds the mistake, the restored one the data before it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from cloudformation import ids
from tests.api.files_helpers import home
from tests.api.helpers import bearer, log_in, user
from tests.cloudformation.stacks import create_stack, document, outputs, physical_ids, stack_parameters, update_stack

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

BODY = b"written before the mistake, read after the restore"


async def _service(settings, stack_outputs, make_client, app_factory):
    configured = replace(
        settings,
        bucket=stack_outputs[ids.OUT_BUCKET],
        table=stack_outputs[ids.OUT_TABLE],
        upload_role_arn=stack_outputs[ids.OUT_UPLOAD_ROLE],
    )
    return await make_client(app_factory(configured))


async def _read(client, ns: str, path: str):
    tokens = await log_in(client, "alice")
    return await client.get(f"/v1/ns/{ns}/files/{path}?via=service", headers=bearer(tokens))


def _instance_policy_resources(aws, stack: str) -> list:
    physical = physical_ids(aws, stack)
    policy = aws("iam").get_role_policy(RoleName=physical[ids.INSTANCE_ROLE], PolicyName="filesync-instance")
    statements = {s["Sid"]: s for s in document(policy["PolicyDocument"])["Statement"]}
    return statements["Table"]["Resource"] + statements["Bucket"]["Resource"]


async def test_a_point_in_time_restore_is_a_parameter_change_and_the_service_reads_the_data(
    aws, settings, make_client, app_factory
):
    parameters = stack_parameters(aws)
    stack = create_stack(aws, parameters)
    before, resources_before = outputs(aws, stack), physical_ids(aws, stack)
    client = await _service(settings, before, make_client, app_factory)
    headers = await user(client, "alice")
    ns = await home(client, headers)
    written = await client.put(f"/v1/ns/{ns}/files/notes.txt", data=BODY, headers=headers)
    assert written.status == 201, await written.text()

    restored = f"{before[ids.OUT_TABLE]}-restored"
    aws("dynamodb").restore_table_to_point_in_time(
        SourceTableName=before[ids.OUT_TABLE], TargetTableName=restored, UseLatestRestorableTime=True
    )
    # The mistake, on the table as it is now: the file deleted.
    deleted = await client.delete(f"/v1/ns/{ns}/files/notes.txt", headers={**headers, "If-Match": "1"})
    assert deleted.status in (200, 204), await deleted.text()
    assert (await _read(client, ns, "notes.txt")).status == 404

    # The restore: one parameter. Nothing is replaced or removed (the stack policy would refuse it).
    update_stack(aws, stack, {**parameters, ids.EXISTING_TABLE_NAME: restored})
    after = outputs(aws, stack)
    assert after[ids.OUT_TABLE] == restored
    assert after[ids.OUT_BUCKET] == before[ids.OUT_BUCKET]
    assert {k: physical_ids(aws, stack)[k] for k in (ids.TABLE, ids.BUCKET)} == {
        k: resources_before[k] for k in (ids.TABLE, ids.BUCKET)
    }
    assert any(str(resource).endswith(f":table/{restored}") for resource in _instance_policy_resources(aws, stack))

    service = await _service(settings, after, make_client, app_factory)
    read = await _read(service, ns, "notes.txt")
    assert read.status == 200, await read.text()
    assert await read.read() == BODY

    # A stack rebuilt on the retained data (the first one deleted, say) adopts the table and the bucket.
    rebuilt = create_stack(
        aws,
        stack_parameters(aws, **{ids.EXISTING_TABLE_NAME: restored, ids.EXISTING_BUCKET_NAME: before[ids.OUT_BUCKET]}),
    )
    adopted = outputs(aws, rebuilt)
    assert (adopted[ids.OUT_TABLE], adopted[ids.OUT_BUCKET]) == (restored, before[ids.OUT_BUCKET])
    assert {f"arn:aws:s3:::{before[ids.OUT_BUCKET]}"} <= set(map(str, _instance_policy_resources(aws, rebuilt)))
    service = await _service(settings, adopted, make_client, app_factory)
    read = await _read(service, ns, "notes.txt")
    assert read.status == 200, await read.text()
    assert await read.read() == BODY
