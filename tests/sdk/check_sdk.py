#!/usr/bin/env python3
"""Drive sae-simulator with Alibaba Cloud's official Python SDK for SAE.

Usage: check_sdk.py ENDPOINT AK SECRET APP_ID INSTANCE_IDS

INSTANCE_IDS is two instance ids of APP_ID joined by a comma: the first is deleted with a request
signed with ROA v1 (the SDK's signature_algorithm='v2'), the second with V3 (the SDK's default).
Between the two, the script follows the first change order with DescribeChangeOrder until it ends,
because SAE refuses a second change while one runs. For each scheme it also sends DeleteInstances
with a wrong secret and expects SignatureDoesNotMatch.

Prints one line per check and exits 0 when all pass; otherwise exits 1 naming the failed check.
Secrets are never printed.
"""

import sys
import time
from urllib.parse import urlparse

from alibabacloud_sae20190506 import models as sae_models
from alibabacloud_sae20190506.client import Client
from alibabacloud_tea_openapi import models as open_api_models

SCHEMES = [("ROA v1", "v2"), ("V3", None)]


class CheckFailed(Exception):
    pass


def client(endpoint, ak, secret, algorithm):
    url = urlparse(endpoint if "://" in endpoint else "http://" + endpoint)
    config = open_api_models.Config(
        access_key_id=ak,
        access_key_secret=secret,
        endpoint=url.netloc,
        protocol=url.scheme.upper(),
        region_id="cn-hangzhou",
        read_timeout=10000,
        connect_timeout=5000,
    )
    if algorithm is not None:
        config.signature_algorithm = algorithm
    return Client(config)


def error_code(exc):
    return getattr(exc, "code", None) or type(exc).__name__


def expect_deleted(sdk, scheme, app_id, instance_id):
    request = sae_models.DeleteInstancesRequest(app_id=app_id, instance_ids=instance_id)
    try:
        body = sdk.delete_instances(request).body
    except Exception as exc:  # the SDK raises its own exception types
        raise CheckFailed(f"{scheme}: DeleteInstances with the right secret failed: {error_code(exc)}: {exc}")
    change_order_id = body.data.change_order_id if body.data else None
    if not body.success or not change_order_id:
        raise CheckFailed(f"{scheme}: DeleteInstances answered without a ChangeOrderId: {body.to_map()}")
    print(f"ok   {scheme}: DeleteInstances accepted, ChangeOrderId {change_order_id}")
    return change_order_id


def expect_refused(sdk, scheme, app_id, instance_id):
    request = sae_models.DeleteInstancesRequest(app_id=app_id, instance_ids=instance_id)
    try:
        body = sdk.delete_instances(request).body
    except Exception as exc:
        code = error_code(exc)
        if code != "SignatureDoesNotMatch":
            raise CheckFailed(f"{scheme}: wrong secret gave {code}, expected SignatureDoesNotMatch")
        print(f"ok   {scheme}: wrong secret refused with SignatureDoesNotMatch")
        return
    raise CheckFailed(f"{scheme}: a request signed with a wrong secret was accepted: {body.to_map()}")


def wait_finished(sdk, scheme, change_order_id, deadline_s=60):
    request = sae_models.DescribeChangeOrderRequest(change_order_id=change_order_id)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            data = sdk.describe_change_order(request).body.data
        except Exception as exc:
            raise CheckFailed(f"{scheme}: DescribeChangeOrder failed: {error_code(exc)}: {exc}")
        if data.change_order_id != change_order_id:
            raise CheckFailed(f"{scheme}: DescribeChangeOrder returned {data.change_order_id}, not {change_order_id}")
        if data.status not in (0, 1):
            print(f"ok   {scheme}: DescribeChangeOrder followed the change order to Status {data.status}")
            return data.status
        if time.monotonic() > deadline:
            raise CheckFailed(f"{scheme}: change order {change_order_id} still running after {deadline_s}s")
        time.sleep(0.1)


def main(argv):
    if len(argv) != 6:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    endpoint, ak, secret, app_id, instance_ids = argv[1:]
    ids = [i.strip() for i in instance_ids.split(",") if i.strip()]
    if len(ids) != 2:
        print("INSTANCE_IDS must be two instance ids joined by a comma", file=sys.stderr)
        return 2
    wrong_secret = secret + "-wrong"
    try:
        for (scheme, algorithm), instance_id in zip(SCHEMES, ids):
            expect_refused(client(endpoint, ak, wrong_secret, algorithm), scheme, app_id, instance_id)
            sdk = client(endpoint, ak, secret, algorithm)
            change_order_id = expect_deleted(sdk, scheme, app_id, instance_id)
            wait_finished(sdk, scheme, change_order_id)
    except CheckFailed as failed:
        print(f"FAIL {failed}", file=sys.stderr)
        return 1
    print("all SDK checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
