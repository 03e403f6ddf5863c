"""Senders without a network: the HTTP call is scripted, sleeping is recorded."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from urllib.parse import SplitResult

import pytest
from prometheus_client import REGISTRY

from consumers.notify.channels import LogSender, WebhookSender, backoff_delays_s, make_sender
from consumers.notify.message import Notification
from consumers.notify.signing import sign, verify_signature
from engine.config import load_settings
from engine.trust.keys import KeyPair

SWITCH_KEY = KeyPair.from_seed(b"tests/switch")
TRUSTED = {SWITCH_KEY.key_id: SWITCH_KEY.public}  # what a bank keeps of the switch's key
NOW_S = 1_700_000_000


def notification_factory(n: int = 1, url: str | None = "http://bank.test/hook") -> Notification:
    return Notification(
        notification_id=f"ntf-{n}",
        payment_id=f"pay-{n}",
        outcome="SETTLED",
        recipient_bank="BKAM",
        webhook_url=url,
        payload={"amount_minor": 12_345, "currency": "MAD", "reason": "Vignette payée"},
    )


class ScriptedWebhook(WebhookSender):
    """Answers each POST from a script: an int is a status, an exception is raised."""

    def __init__(
        self,
        script: list[int | Exception],
        *,
        timeout_ms: int = 100,
        max_attempts: int = 4,
        backoff_initial_ms: int = 100,
        backoff_max_ms: int = 250,
        rng: random.Random | None = None,
    ) -> None:
        self.delays_s: list[float] = []
        super().__init__(
            [SWITCH_KEY],
            timeout_ms,
            max_attempts,
            backoff_initial_ms,
            backoff_max_ms,
            sleep=self.delays_s.append,
            rng=rng,
            clock_s=lambda: NOW_S,
        )
        self.script = list(script)
        self.posts: list[tuple[dict[str, str], bytes]] = []

    def _post_once(self, url: SplitResult, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        self.posts.append((headers, body))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step, ""


def attempts_counted(sender: str, result: str) -> float:
    labels = {"sender": sender, "result": result}
    return REGISTRY.get_sample_value("sakk_notification_attempts_total", labels) or 0.0


def test_backoff_doubles_from_initial_and_is_capped_at_max() -> None:
    sender = ScriptedWebhook(
        [TimeoutError(), 503, ConnectionResetError(), 429, 200], max_attempts=5
    )

    result = sender.deliver(notification_factory())

    assert result.delivered
    assert [a.number for a in result.attempts] == [1, 2, 3, 4, 5]
    assert sender.delays_s == [0.1, 0.2, 0.25, 0.25]
    assert backoff_delays_s(5, 100, 250) == (0.1, 0.2, 0.25, 0.25)


def test_worst_case_is_attempt_deadlines_plus_backoffs() -> None:
    sender = ScriptedWebhook([], timeout_ms=2_000, backoff_initial_ms=100, backoff_max_ms=2_000)

    assert sender.worst_case_s == pytest.approx(4 * 2.0 + 0.1 + 0.2 + 0.4)


def test_seeded_jitter_is_reproducible_and_never_longer_than_the_schedule() -> None:
    runs = []
    for _ in range(2):
        sender = ScriptedWebhook([500, 500, 500, 500], rng=random.Random(7))
        sender.deliver(notification_factory())
        runs.append(sender.delays_s)

    assert runs[0] == runs[1]
    for delay, full in zip(runs[0], (0.1, 0.2, 0.25), strict=True):
        assert full / 2 <= delay <= full


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    sender = ScriptedWebhook([500, 502, TimeoutError()], max_attempts=3)

    result = sender.deliver(notification_factory())

    assert not result.delivered
    assert len(result.attempts) == 3
    assert result.last_error == "timeout after 100 ms"
    assert [a.status_code for a in result.attempts] == [500, 502, None]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301])
def test_refusal_is_not_retried(status: int) -> None:
    sender = ScriptedWebhook([status, 200])

    result = sender.deliver(notification_factory())

    assert not result.delivered
    assert len(result.attempts) == 1
    assert result.last_error == f"HTTP {status}"
    assert sender.delays_s == []


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_not_now_answers_are_retried(status: int) -> None:
    result = ScriptedWebhook([status, 200]).deliver(notification_factory())

    assert result.delivered
    assert [a.status_code for a in result.attempts] == [status, 200]


def test_every_attempt_carries_the_same_notification_id_and_a_valid_signature() -> None:
    sender = ScriptedWebhook([500, 500, 200])

    sender.deliver(notification_factory(n=9))

    assert {h["X-Sakk-Notification-Id"] for h, _ in sender.posts} == {"ntf-9"}
    for headers, body in sender.posts:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(TRUSTED, headers, body, now_s=NOW_S)


def test_missing_webhook_url_fails_without_any_attempt() -> None:
    sender = ScriptedWebhook([200])

    result = sender.deliver(notification_factory(url=None))

    assert not result.delivered
    assert result.attempts == ()
    assert "no webhook_url for bank 'BKAM'" in (result.last_error or "")
    assert sender.posts == []


def test_non_http_webhook_url_fails_without_any_attempt() -> None:
    result = ScriptedWebhook([200]).deliver(notification_factory(url="ftp://bank.test/x"))

    assert not result.delivered
    assert result.attempts == ()


def test_each_attempt_is_counted_by_result() -> None:
    ok, error = attempts_counted("webhook", "ok"), attempts_counted("webhook", "error")

    ScriptedWebhook([500, 200]).deliver(notification_factory())

    assert attempts_counted("webhook", "ok") == ok + 1
    assert attempts_counted("webhook", "error") == error + 1


def test_body_is_compact_sorted_utf8_json_with_the_ids_inside() -> None:
    expected = (
        '{"data":{"amount_minor":12345,"currency":"MAD","reason":"Vignette payée"},'
        '"notification_id":"ntf-1","outcome":"SETTLED","payment_id":"pay-1",'
        '"recipient_bank":"BKAM"}'
    )

    assert notification_factory().body() == expected.encode("utf-8")


def test_float_in_payload_is_refused() -> None:
    with pytest.raises(TypeError, match="payload.fee.amount"):
        Notification("n", "p", "SETTLED", "B", None, {"fee": {"amount": 1.5}})


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Notification("n", "p", "DONE", "B", None, {})


def headers_for(
    body: bytes, timestamp_s: int = NOW_S, keys: tuple[KeyPair, ...] = (SWITCH_KEY,)
) -> dict[str, str]:
    return {
        "X-Sakk-Timestamp": str(timestamp_s),
        "X-Sakk-Signature": sign(keys, timestamp_s, body),
    }


def test_signature_round_trip() -> None:
    body = notification_factory().body()

    assert verify_signature(TRUSTED, headers_for(body), body, now_s=NOW_S + 299)


def test_signature_header_names_are_case_insensitive() -> None:
    body = b"{}"
    headers = {k.lower(): v for k, v in headers_for(body).items()}

    assert verify_signature(TRUSTED, headers, body, now_s=NOW_S)


@pytest.mark.parametrize("skew_s", [301, -301])
def test_stale_or_future_timestamp_is_refused(skew_s: int) -> None:
    body = notification_factory().body()

    assert not verify_signature(TRUSTED, headers_for(body), body, now_s=NOW_S + skew_s)


def test_tampered_body_is_refused() -> None:
    body = notification_factory().body()
    tampered = body.replace(b"12345", b"99345")

    assert not verify_signature(TRUSTED, headers_for(body), tampered, now_s=NOW_S)


def test_a_key_the_bank_does_not_trust_is_refused() -> None:
    body = b"{}"
    other = KeyPair.from_seed(b"tests/another bank")

    assert not verify_signature(TRUSTED, headers_for(body, keys=(other,)), body, now_s=NOW_S)


def test_during_a_rotation_both_keys_sign_and_either_one_verifies() -> None:
    body = notification_factory().body()
    new = KeyPair.from_seed(b"tests/switch/next")
    headers = headers_for(body, keys=(SWITCH_KEY, new))

    assert verify_signature(TRUSTED, headers, body, now_s=NOW_S)
    assert verify_signature({new.key_id: new.public}, headers, body, now_s=NOW_S)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Sakk-Timestamp": "+1700000000", "X-Sakk-Signature": "k=AA=="},
        {"X-Sakk-Timestamp": "1700000000", "X-Sakk-Signature": "x" * 5000},
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    assert not verify_signature(TRUSTED, headers, b"{}", now_s=NOW_S)


def test_log_sender_writes_one_line_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "notifications.jsonl"
    sender = LogSender(path)
    threads = [
        threading.Thread(target=lambda i=i: sender.deliver(notification_factory(n=i)))
        for i in range(50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sender.close()

    lines = path.read_bytes().splitlines()
    assert len(lines) == 50
    assert {json.loads(line)["notification_id"] for line in lines} == {
        f"ntf-{i}" for i in range(50)
    }


def test_log_sender_reports_one_successful_attempt(tmp_path: Path) -> None:
    sender = LogSender(tmp_path / "n.jsonl")

    result = sender.deliver(notification_factory())
    sender.close()

    assert result.delivered and len(result.attempts) == 1 and result.last_error is None


def test_make_sender_picks_by_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "switch.pem"
    SWITCH_KEY.write(key_file)
    log = make_sender(load_settings({}, notify_log_path=tmp_path / "n.jsonl"))
    webhook = make_sender(
        load_settings({}, notify_sender="webhook", webhook_signing_key_files=str(key_file))
    )

    assert (log.name, webhook.name) == ("log", "webhook")
    log.close()
    webhook.close()
