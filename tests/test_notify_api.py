"""Notifier over HTTP (``/v1/webhooks``, ``/v1/notifications``, ``/v1/webhook-deliveries``) and the
``loopml webhooks`` / ``loopml notifications`` CLI, against a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml import Loopml, load_settings
from loopml.cli import notify as notify_cli
from loopml.serving.app import create_app
from test_notify import Receiver
from test_notify import receiver as shared_receiver  # noqa: F401 - registers the `receiver` fixture here

AUTH = {"Authorization": "Bearer s3cret", "X-Loopml-Actor": "ana"}


@pytest.fixture
def http(lm: Loopml) -> Iterator[TestClient]:
    lm.settings.api_token = "s3cret"
    with TestClient(create_app(lm, apps=()), raise_server_exceptions=False) as client:
        yield client


def test_http_webhooks_notifications_and_deliveries(http: TestClient, lm: Loopml, receiver: Receiver) -> None:
    create = {"name": "ops", "url": receiver.url(), "topics": ["alert."], "secret": "k3y"}
    assert http.post("/v1/webhooks", json=create).status_code == 401
    made = http.post("/v1/webhooks", json=create, headers=AUTH)
    assert made.status_code == 201, made.text
    assert made.json()["has_secret"] is True and "secret" not in made.json()
    assert http.post("/v1/webhooks", json=create, headers=AUTH).status_code == 409
    listed = http.get("/v1/webhooks").json()["webhooks"]
    assert [(w["name"], w["topics"]) for w in listed] == [("ops", ["alert."])]

    for body, field in [
        ({**create, "name": "two", "url": "ftp://x"}, "url"),
        ({**create, "name": "two", "format": "xml"}, "format"),
        ({**create, "name": "two", "topics": []}, "topics"),
        ({**create, "name": "bad name"}, "name"),
        ({**create, "name": "two", "colour": "red"}, "colour"),
    ]:
        bad = http.post("/v1/webhooks", json=body, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
    missing = http.patch("/v1/webhooks/nope", json={"active": False}, headers=AUTH)
    assert missing.status_code == 404 and missing.json()["field"] == "name"

    patched = http.patch("/v1/webhooks/ops", json={"topics": ["alert.", "moderation."]}, headers=AUTH)
    assert patched.json()["topics"] == ["alert.", "moderation."] and patched.json()["has_secret"] is True
    cleared = http.patch("/v1/webhooks/ops", json={"secret": None}, headers=AUTH)
    assert cleared.json()["has_secret"] is False

    tested = http.post("/v1/webhooks/ops/test", headers=AUTH)
    assert tested.status_code == 200 and tested.json()["status"] == "delivered"
    assert receiver.bodies()[0]["topic"] == "webhook.test" and receiver.bodies()[0]["data"]["actor"] == "ana"

    receiver.script = [404]
    alert = lm.alerts.fire("late", title="forecast late", severity="critical")
    notes = http.get("/v1/notifications", params={"topic": "alert."}).json()["notifications"]
    assert [n["key"] for n in notes] == [f"alert:{alert.id}:opened"]
    [pending] = http.get("/v1/webhook-deliveries", params={"status": "pending"}).json()["deliveries"]
    failed = lm.notify.deliver_now(pending["id"])
    assert failed.status == "failed" and failed.response_status == 404
    listed = http.get("/v1/webhook-deliveries", params={"status": "failed"}).json()["deliveries"]
    assert [d["id"] for d in listed] == [pending["id"]]
    assert http.get("/v1/webhook-deliveries", params={"status": "lost"}).json()["field"] == "status"
    retried = http.post(f"/v1/webhook-deliveries/{pending['id']}/retry", headers=AUTH)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    again = http.post(f"/v1/webhook-deliveries/{pending['id']}/retry", headers=AUTH)
    assert again.status_code == 409
    assert http.post("/v1/webhook-deliveries/999/retry", headers=AUTH).status_code == 404
    assert http.post("/v1/webhook-deliveries/0/retry", headers=AUTH).status_code == 422

    note_id = notes[0]["id"]
    assert http.post(f"/v1/notifications/{note_id}/read").status_code == 401
    read = http.post(f"/v1/notifications/{note_id}/read", headers=AUTH)
    assert read.json()["read_at"] is not None
    assert (
        http.get("/v1/notifications", params={"unread": "true", "topic": "alert."}).json()["notifications"]
        == []
    )
    assert http.get(f"/v1/notifications/{note_id}").json()["key"] == notes[0]["key"]
    assert http.get("/v1/notifications/999").status_code == 404
    assert http.get("/v1/notifications", params={"topic": "a b"}).json()["field"] == "topic"

    assert http.delete("/v1/webhooks/ops").status_code == 401
    assert http.delete("/v1/webhooks/ops", headers=AUTH).json() == {"removed": "ops"}
    assert http.get("/v1/webhooks/ops").status_code == 404


runner = CliRunner()


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> Iterator[tuple[typer.Typer, Loopml]]:
    """A root app with only the notify groups, pointed (via LOOPML_*) at a fresh SQLite home."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    shutil.copy(sqlite_template, tmp_path / "home" / "loopml.db")
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    app = typer.Typer()
    notify_cli.register(app)
    lm = Loopml(load_settings())
    yield app, lm
    lm.close()


def test_cli_webhooks_and_notifications(cli: tuple[typer.Typer, Loopml], receiver: Receiver) -> None:
    app, lm = cli
    added = runner.invoke(
        app,
        ["webhooks", "add", "ops", receiver.url(), "--format", "slack", "--topic", "alert.", "--secret", "k"],
    )
    assert added.exit_code == 0, added.output
    assert "ops" in added.output and "signed" in added.output and "slack" in added.output
    listed = runner.invoke(app, ["webhooks", "list", "--json"])
    assert [w["name"] for w in json.loads(listed.output)] == ["ops"]

    tested = runner.invoke(app, ["webhooks", "test", "ops"])
    assert tested.exit_code == 0 and "delivered" in tested.output and "HTTP 200" in tested.output
    assert "blocks" in receiver.bodies()[0]

    receiver.script = [400]
    refused = runner.invoke(app, ["webhooks", "test", "ops"])
    assert refused.exit_code == 1 and "failed" in refused.output and "HTTP 400" in refused.output
    failed = runner.invoke(app, ["webhooks", "deliveries", "--status", "failed", "--json"])
    [delivery] = json.loads(failed.output)
    retried = runner.invoke(app, ["webhooks", "retry", str(delivery["id"])])
    assert retried.exit_code == 0 and "queued again" in retried.output
    table = runner.invoke(app, ["webhooks", "deliveries"])
    assert table.exit_code == 0 and "webhook deliveries (2)" in table.output

    paused = runner.invoke(app, ["webhooks", "update", "ops", "--inactive"])
    assert paused.exit_code == 0 and "inactive" in paused.output
    notes = runner.invoke(app, ["notifications", "list", "--topic", "webhook."])
    assert notes.exit_code == 0 and "notifications (2)" in notes.output
    as_json = runner.invoke(app, ["notifications", "list", "--json", "--unread"])
    assert len(json.loads(as_json.output)) == 2

    bad = runner.invoke(app, ["webhooks", "add", "two", "ftp://x"])
    assert bad.exit_code != 0 and "url" in str(bad.exception)
    gone = runner.invoke(app, ["webhooks", "remove", "ops"])
    assert gone.exit_code == 0 and lm.notify.list_webhooks() == []
    unknown = runner.invoke(app, ["webhooks", "remove", "ops"])
    assert unknown.exit_code != 0 and "does not exist" in str(unknown.exception)
    for args in (["webhooks", "--help"], ["webhooks", "add", "--help"], ["notifications", "list", "--help"]):
        assert runner.invoke(app, args).exit_code == 0
