"""How album-job images reach workers: PostgreSQL itself (default) or an SQS queue.

Either way the job's state is its rows in PostgreSQL and an image is committed exactly once
(`JobStore.commit_image`); the transport only decides who works on what next.

- `PostgresTransport`: workers lease rows with `FOR UPDATE SKIP LOCKED`; an expired lease
  (a hung worker) is taken again.
- `SqsTransport`: the coordinator sends one message per image (row id); workers receive,
  process and delete them. SQS is at-least-once: a second delivery of a finished image finds
  its row done and is dropped. After `max_attempts` receives SQS moves a message to the
  dead-letter queue (a redrive policy set at start), where the coordinator marks the image
  failed. Messages of a paused job come back later; those of a cancelled job are dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from serve_app.config import Settings
from serve_app.store.jobs import FINAL_STATES, ClaimedImage, JobStore

log = logging.getLogger(__name__)


class PostgresTransport:
    def __init__(self, jobs: JobStore, settings: Settings) -> None:
        self.jobs = jobs
        self.timeout_s = settings.job_image_timeout_s
        self.max_attempts = settings.job_max_attempts

    def take(self, worker: str, limit: int) -> list[ClaimedImage]:
        return self.jobs.claim(worker, limit, self.timeout_s, self.max_attempts)

    def done(self, claims: Sequence[ClaimedImage]) -> None:
        """Nothing to do: committing an image released its row."""

    def give_back(self, worker: str, claims: Sequence[ClaimedImage]) -> None:
        self.jobs.release_worker(worker)

    def send_pending(self) -> int:
        """Nothing to send: workers read the rows themselves."""
        return 0

    def collect_dead_letters(self) -> int:
        return 0


def sqs_client(settings: Settings) -> Any:
    import boto3

    return boto3.session.Session().client(
        "sqs",
        endpoint_url=settings.job_sqs_endpoint_url or None,
        region_name=settings.aws_region,
    )


class SqsTransport:
    # Seconds a paused job's message stays invisible before it is looked at again.
    PAUSED_DELAY_S = 10

    def __init__(self, jobs: JobStore, settings: Settings, client: Any | None = None) -> None:
        if not settings.job_sqs_queue_url:
            from serve_app.errors import InvalidParameter

            raise InvalidParameter("FACESERVE_JOB_QUEUE=sqs needs FACESERVE_JOB_SQS_QUEUE_URL")
        self.jobs = jobs
        self.client = client or sqs_client(settings)
        self.queue_url = settings.job_sqs_queue_url
        self.dlq_url = settings.job_sqs_dlq_url
        self.max_attempts = settings.job_max_attempts
        # A message's visibility: the per-image timeout for a whole batch of them.
        self.visibility_s = max(1, int(settings.job_image_timeout_s * settings.job_batch_size))
        self._receipts: dict[int, str] = {}
        self._lock = threading.Lock()

    def configure_dead_letters(self) -> None:
        """Send messages received max_attempts times to the dead-letter queue."""
        if not self.dlq_url:
            return
        arn = self.client.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(self.max_attempts)}
        self.client.set_queue_attributes(
            QueueUrl=self.queue_url, Attributes={"RedrivePolicy": json.dumps(policy)}
        )

    # -- the coordinator's side -----------------------------------------------------------

    def send_pending(self) -> int:
        """Send a message for each pending image not sent yet (or sent so long ago that the
        message must be lost); returns how many were sent."""
        rows = self.jobs.unsent(("running", "paused"), 1000)
        for start in range(0, len(rows), 10):
            batch = rows[start : start + 10]
            self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(r), "MessageBody": json.dumps({"row": r})} for r in batch],
            )
        # Not sent again while its messages may still be delivered and retried.
        self.jobs.mark_sent(rows, self.visibility_s * (self.max_attempts + 1) + 60)
        return len(rows)

    def collect_dead_letters(self) -> int:
        """Images whose messages reached the dead-letter queue fail (`attempts`)."""
        if not self.dlq_url:
            return 0
        messages = self.client.receive_message(
            QueueUrl=self.dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
        ).get("Messages", [])
        for message in messages:
            row = _row_of(message)
            if row is not None:
                self.jobs.finish_image(
                    row,
                    "failed",
                    reason="timeout",
                    message=f"not finished in {self.max_attempts} deliveries "
                    "(moved to the dead-letter queue)",
                )
            self.client.delete_message(
                QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(messages)

    # -- the workers' side ----------------------------------------------------------------

    def take(self, worker: str, limit: int) -> list[ClaimedImage]:
        messages = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, limit)),
            WaitTimeSeconds=1,
            VisibilityTimeout=self.visibility_s,
        ).get("Messages", [])
        rows: dict[int, str] = {}
        for message in messages:
            row = _row_of(message)
            if row is None:  # not ours: drop it rather than let it loop forever
                self._delete(message["ReceiptHandle"])
                continue
            rows[row] = message["ReceiptHandle"]
        if not rows:
            return []
        states = self.jobs.row_states(list(rows))
        wanted = []
        for row, receipt in rows.items():
            image_state, job_state = states.get(row, ("gone", "cancelled"))
            if job_state == "paused" or job_state == "queued":
                self.client.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self.PAUSED_DELAY_S,
                )
            elif image_state not in ("pending", "running") or job_state in FINAL_STATES:
                self._delete(receipt)  # done already (a second delivery), or cancelled
            else:
                wanted.append(row)
        claims = self.jobs.claim_rows(wanted, worker)
        with self._lock:
            for claim in claims:
                self._receipts[claim.row_id] = rows[claim.row_id]
        for row in set(wanted) - {c.row_id for c in claims}:
            self._delete(rows[row])  # finished between our two reads
        return claims

    def done(self, claims: Sequence[ClaimedImage]) -> None:
        with self._lock:
            receipts = [self._receipts.pop(c.row_id, None) for c in claims]
        for receipt in receipts:
            if receipt:
                self._delete(receipt)

    def give_back(self, worker: str, claims: Sequence[ClaimedImage]) -> None:
        """Leave the messages: SQS delivers them again after their visibility timeout."""
        with self._lock:
            for claim in claims:
                self._receipts.pop(claim.row_id, None)
        self.jobs.release_worker(worker)

    def _delete(self, receipt: str) -> None:
        try:
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        except Exception:  # noqa: BLE001 - redelivered then, and dropped as a duplicate
            log.warning("could not delete an SQS message; it will be redelivered and dropped")


def _row_of(message: dict[str, Any]) -> int | None:
    try:
        row = json.loads(message.get("Body", ""))["row"]
        return int(row) if isinstance(row, int) else None
    except (ValueError, KeyError, TypeError):
        return None


def transport_for(jobs: JobStore, settings: Settings) -> PostgresTransport | SqsTransport:
    if settings.job_queue == "sqs":
        return SqsTransport(jobs, settings)
    return PostgresTransport(jobs, settings)
