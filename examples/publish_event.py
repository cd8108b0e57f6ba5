"""Publish one purchase to the CRM with nothing but kafka-python: the integration example.

Any system can feed the CRM this way; it needs no code from this project. Usage:

    python examples/publish_event.py localhost:9092

The message is a CloudEvents 1.0 document in structured JSON mode. The Kafka key is the customer's
id (or another identifier), so one customer's events stay in order.
"""

import json
import sys
import uuid
from datetime import UTC, datetime

from kafka import KafkaProducer

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
customer_id = sys.argv[2] if len(sys.argv) > 2 else "shop-customer-42"

event = {
    "specversion": "1.0",
    "id": str(uuid.uuid4()),  # your idempotency key: resending the same id is applied once
    "source": "/my-shop/checkout",
    "type": "crm.purchase.v1",
    "time": datetime.now(UTC).isoformat(),
    "datacontenttype": "application/json",
    "data": {
        "customer": {"customer_id": customer_id, "email": "ada@example.com"},
        "channel": "web",
        "order_id": "order-1001",
        "items": [{"item_id": "sku-123", "quantity": 2, "price": 19.5}],
        "amount": 39.0,
        "currency": "EUR",
    },
}

producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
producer.send(
    "crm.interactions.received.v1",
    key=customer_id.encode(),
    value=json.dumps(event).encode(),
).get(timeout=10)
producer.close()
print(event["id"])  # noqa: T201 (the event id is what the script reports)
