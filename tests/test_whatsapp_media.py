"""A person's files on WhatsApp (issue 16, point 5), in the fast in-process tier: nothing is
downloaded when the message arrives; an advisor opening a file makes the console fetch it from
Twilio (Basic auth, Twilio's redirect to its storage) and stream it through, never kept. Only
Twilio media addresses of our own account are ever fetched, and every access is audited.
Requests go to the local stand-in (`TwilioStandIn`); no model.
"""

from __future__ import annotations

import datetime as dt

from blueprint_harness import Served, channel_test_marks, in_event_loop, served
from standins import TWILIO_ACCOUNT_SID, TwilioStandIn
from test_channel_blueprints import (
    ADVISOR_API,
    Console,
    all_channels,
    claimed_case,
    open_handoff,
    post_to_whatsapp,
    signed_in,
    twilio_fields,
    whatsapp_address,
    whatsapp_replies,
)

import integrations.twilio
from bot import services
from bot.settings import Settings
from channels._common import MEDIA_PAYLOAD
from integrations.twilio import is_our_media_url

pytestmark = channel_test_marks(90)

PHOTO = b"\xff\xd8\xff\xe0" + b"foto de contrato " * 4000 + b"\xff\xd9"  # ~68 kB: several chunks
PDF = b"%PDF-1.4\n" + b"contrato firmado\n" * 100


def with_media(*files: tuple[str, str]) -> dict[str, str]:
    """Twilio's form fields for a message carrying these (url, content type) files."""
    fields = {"NumMedia": str(len(files))}
    for index, (url, content_type) in enumerate(files):
        fields[f"MediaUrl{index}"], fields[f"MediaContentType{index}"] = url, content_type
    return fields


async def fetch(app: Served, console: Console | None, handoff_id: int, n: int):
    headers = {"Authorization": f"Bearer {console.token}"} if console and console.token else {}
    return await app.client.get(f"{ADVISOR_API}/handoffs/{handoff_id}/media/{n}", headers=headers)


def media_audit() -> list[tuple[int | None, str, int | None]]:
    return [entry for entry in services.handoff_desk().store.audit_log() if entry[1].startswith("media")]


@in_event_loop
async def test_a_file_sent_during_a_hand_off_is_fetched_only_when_the_advisor_opens_it(environment, twilio_standin):
    address = whatsapp_address()
    photo, pdf = twilio_standin.add_media(PHOTO, "image/jpeg"), twilio_standin.add_media(PDF, "application/pdf")
    before = len(twilio_standin.media_requests())
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff = await claimed_case(app, address, "whatsapp")
        await post_to_whatsapp(
            app, twilio_fields(address, "", **with_media((photo, "image/jpeg"), (pdf, "application/pdf")))
        )
        await app.idle()
        assert len(twilio_standin.media_requests()) == before, "nothing is downloaded when the message arrives"
        assert app.assistant.received == [], "the person talks with the advisor"

        detail = await rosa.call("GET", f"/handoffs/{handoff.id}")
        line = detail["transcript"][-1]
        assert (line["author"], line["text"]) == ("person", "[envió: image/jpeg, application/pdf]")
        assert line["media"] == [{"n": 0, "type": "image/jpeg"}, {"n": 1, "type": "application/pdf"}]
        assert detail["media"] == line["media"]
        assert "url" not in str(detail["media"]), "the console never sees Twilio's address"
        assert len(twilio_standin.media_requests()) == before, "reading the case downloads nothing either"

        shown = await fetch(app, rosa, handoff.id, 0)
        assert shown.status_code == 200 and shown.content == PHOTO
        assert shown.headers["content-type"] == "image/jpeg"
        assert shown.headers["content-disposition"].startswith("inline")
        assert shown.headers["cache-control"] == "no-store"
        assert shown.headers["x-content-type-options"] == "nosniff"

        saved = await fetch(app, rosa, handoff.id, 1)
        assert saved.status_code == 200 and saved.content == PDF
        assert saved.headers["content-disposition"].startswith("attachment"), "only images and audio are shown"

    asked, stored = twilio_standin.media_requests()[before : before + 2]
    assert asked.status == 307 and asked.headers["Authorization"].startswith("Basic "), "Twilio wants Basic auth"
    assert stored.status == 200 and stored.path.startswith(TwilioStandIn.MEDIA_STORE), "Twilio's redirect followed"
    rosa_id = services.handoff_desk().store.advisor_for_token(rosa.token).id
    assert media_audit() == [(rosa_id, "media", handoff.id), (rosa_id, "media", handoff.id)]


@in_event_loop
async def test_a_file_sent_to_the_assistant_before_the_hand_off_is_listed_from_the_conversation(
    environment, twilio_standin
):
    address = whatsapp_address()
    audio = twilio_standin.add_media(b"OggS audio de voz", "audio/ogg")
    before = len(twilio_standin.media_requests())
    async with served(all_channels(environment.settings())) as app:
        await post_to_whatsapp(app, twilio_fields(address, "", **with_media((audio, "audio/ogg"))))
        await whatsapp_replies(twilio_standin, address, 1)
        await app.idle()
        assert len(twilio_standin.media_requests()) == before
        # The assistant opens the hand-off with the last turns it saw: here, its answer to the audio.
        said = [("assistant", f"Respuesta a: {MEDIA_PAYLOAD}")]
        handoff = services.handoff_desk().store.open(address, "whatsapp", "requested", 0, {}, said)
        rosa = await signed_in(app, "rosa.canales", "Rosa")
        detail = await rosa.call("GET", f"/handoffs/{handoff.id}")
        assert detail["media"] == [{"n": 0, "type": "audio/ogg"}]
        (earlier,) = detail["earlier"]
        assert (earlier["author"], earlier["media"]) == ("person", [{"n": 0, "type": "audio/ogg"}])

        heard = await fetch(app, rosa, handoff.id, 0)  # a waiting case: any advisor may look before claiming
        assert heard.status_code == 200 and heard.content == b"OggS audio de voz"
        assert heard.headers["content-disposition"].startswith("inline")
    assert len(twilio_standin.media_requests()) == before + 2


@in_event_loop
async def test_only_our_accounts_media_is_fetched_and_only_by_whom_may_see_the_case(environment, twilio_standin):
    address = whatsapp_address()
    ours = twilio_standin.add_media(PHOTO, "image/jpeg")
    forged = [
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
        ours.replace(TWILIO_ACCOUNT_SID, "AC" + "f" * 32),  # another Twilio account
        ours + "?redirect=http://127.0.0.1:1/",
        ours.replace("http://", "http://user:pass@"),
    ]
    before = len(twilio_standin.media_requests())
    async with served(all_channels(environment.settings())) as app:
        rosa = await signed_in(app, "rosa.canales", "Rosa")
        luis = await signed_in(app, "luis.paredes", "Luis")
        handoff = open_handoff(address, "whatsapp")
        await rosa.call("POST", f"/handoffs/{handoff.id}/claim")
        files = [(url, "image/jpeg") for url in [*forged, ours]]
        await post_to_whatsapp(app, twilio_fields(address, "", **with_media(*files)))
        await app.idle()

        for n in range(len(forged)):
            refused = await fetch(app, rosa, handoff.id, n)
            assert refused.status_code == 403 and refused.json()["error"], n
        assert len(twilio_standin.media_requests()) == before, "a forged address is never fetched"

        assert (await fetch(app, None, handoff.id, len(forged))).status_code == 401
        assert (await fetch(app, luis, handoff.id, len(forged))).status_code == 403, "another advisor's case"
        assert (await fetch(app, rosa, handoff.id, 99)).status_code == 404
        assert (await fetch(app, rosa, 999999, 0)).status_code == 404
        assert (await fetch(app, rosa, handoff.id, len(forged))).status_code == 200
    assert len(twilio_standin.media_requests()) == before + 2
    store = services.handoff_desk().store
    rosa_id, luis_id = (store.advisor_for_token(c.token).id for c in (rosa, luis))
    assert media_audit() == [
        *[(rosa_id, "media_refused", handoff.id)] * len(forged),
        (luis_id, "media_refused", handoff.id),
        (rosa_id, "media", handoff.id),
    ]


@in_event_loop
async def test_an_oversized_or_vanished_file_is_a_clear_error(environment, twilio_standin, monkeypatch):
    monkeypatch.setattr(integrations.twilio, "MEDIA_MAX_BYTES", 1024)
    address = whatsapp_address()
    big = twilio_standin.add_media(b"x" * 2048, "video/mp4")
    gone = big.replace("/Media/ME", "/Media/ME0")[:-1]  # well-formed, but Twilio has no such file
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff = await claimed_case(app, address, "whatsapp")
        await post_to_whatsapp(app, twilio_fields(address, "", **with_media((big, "video/mp4"), (gone, "image/png"))))
        await app.idle()
        too_large = await fetch(app, rosa, handoff.id, 0)
        assert too_large.status_code == 413 and "grande" in too_large.json()["error"]
        missing = await fetch(app, rosa, handoff.id, 1)
        assert missing.status_code == 502 and missing.json()["error"]
        # Storage that does not say how large a file is: read up to the limit, then refused or passed on.
        untold = twilio_standin.add_media(b"y" * 4096, "application/pdf", tell_length=False)
        small = twilio_standin.add_media(b"z" * 512, "application/pdf", tell_length=False)
        both = with_media((untold, "application/pdf"), (small, "application/pdf"))
        await post_to_whatsapp(app, twilio_fields(address, "", **both))
        await app.idle()
        assert (await fetch(app, rosa, handoff.id, 2)).status_code == 413
        passed = await fetch(app, rosa, handoff.id, 3)
        assert passed.status_code == 200 and passed.content == b"z" * 512
        assert passed.headers["content-disposition"].startswith("attachment")


def test_a_media_url_is_ours_only_on_twilios_host_under_our_account():
    settings = Settings.from_env({"TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "x" * 32})
    path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/MM{'a' * 32}/Media/ME{'b' * 32}"
    assert is_our_media_url("https://api.twilio.com" + path, settings)
    for url in (
        "http://api.twilio.com" + path,
        "https://api.twilio.com.evil.pe" + path,
        "https://api.twilio.com:8443" + path,
        "https://evil.pe" + path,
        "https://api.twilio.com" + path + "/../../../Calls.json",
        "https://api.twilio.com" + path.replace(TWILIO_ACCOUNT_SID, "AC" + "c" * 32),
        "https://api.twilio.com/2010-04-01/Accounts/" + TWILIO_ACCOUNT_SID + "/Messages.json",
        "file:///etc/passwd",
        "",
    ):
        assert not is_our_media_url(url, settings), url


def test_the_media_reference_is_erased_with_its_hand_off(environment):
    store = services.handoff_desk().store
    view = open_handoff("whatsapp:+51999000111", "whatsapp")
    store.add_message(view.id, "person", "[envió: image/jpeg]", media=[{"type": "image/jpeg", "url": "https://x/1"}])
    assert store.media(view.id) == [(1, "image/jpeg", "https://x/1")]
    store.forget("whatsapp:+51999000111")
    assert store.media(view.id) == []

    kept = open_handoff("whatsapp:+51999000222", "whatsapp")
    store.add_message(kept.id, "person", "[envió: audio/ogg]", media=[{"type": "audio/ogg", "url": "https://x/2"}])
    store.purge_older_than(store.clock() + dt.timedelta(days=1))
    assert store.media(kept.id) == []
