"""
Attachments through the real ASGI stack: uploads checked by their bytes (every accepted
kind, and every bad one storing nothing), who may fetch them, claiming them with a
message, and what goes upstream for a model that sees images and one that does not.
"""

import base64
import re
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import attachment_prompt, attachments, context, generation
from chat.models import Attachment, Conversation, Message, ShareLink
from tests import attachment_files as files
from tests.asgi_client import AsgiClient, Response, read_events

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored(media: Path) -> list[Path]:
    return [path for path in media.rglob("*") if path.is_file()] if media.exists() else []


async def upload(client: AsgiClient, name: str, data: bytes) -> Response:
    body, content_type = files.multipart(name, data)
    return await client.request(
        "POST", "/api/attachments/", body=body, headers=sized(content_type, body)
    )


def sized(content_type: str, body: bytes) -> dict[str, str]:
    # A browser's upload says its length; Django reads no multipart body without it.
    return {"Content-Type": content_type, "Content-Length": str(len(body))}


async def uploaded(client: AsgiClient, name: str, data: bytes) -> dict:
    response = await upload(client, name, data)
    assert response.status == 201, await response.body()
    return await response.json()


async def refused(client: AsgiClient, name: str, data: bytes, media: Path) -> tuple[int, str]:
    response = await upload(client, name, data)
    error = (await response.json())["error"]
    assert error["message"]
    assert await Attachment.objects.acount() == 0
    assert stored(media) == []
    return response.status, error["code"]


# Uploads: the type is the content's.


@pytest.mark.parametrize(
    ("name", "data", "kind", "content_type"),
    [
        ("photo.png", files.image("PNG"), "image", "image/png"),
        ("photo.jpg", files.image("JPEG"), "image", "image/jpeg"),
        ("photo.webp", files.image("WEBP"), "image", "image/webp"),
        ("anim.gif", files.image("GIF"), "image", "image/gif"),
        ("notes.txt", "Hello, world: naïve café\n".encode(), "text", "text/plain"),
        ("bom.md", b"\xef\xbb\xbf# Title\n", "text", "text/plain"),
        ("report.pdf", files.pdf("Hello PDF world"), "pdf", "application/pdf"),
        # The name says one thing, the bytes another: the bytes win.
        ("picture.pdf", files.image("PNG"), "image", "image/png"),
        ("scan.png", files.pdf("Scanned text"), "pdf", "application/pdf"),
        ("page.txt", b"<script>alert(1)</script>", "text", "text/plain"),
    ],
)
async def test_an_upload_is_what_its_bytes_are(
    api, demo_model, media, name, data, kind, content_type
):
    shown = await uploaded(api, name, data)

    assert (shown["name"], shown["kind"], shown["content_type"]) == (name, kind, content_type)
    assert shown["size"] == len(data)
    row = await Attachment.objects.aget(pk=shown["id"])
    assert row.message_id is None
    assert name not in row.file.name  # the user's name is never a path
    assert shown["url"] == f"/attachments/{row.pk}/"
    if kind == "image":
        assert (shown["width"], shown["height"]) == (64, 48)
        assert shown["thumbnail_url"] == f"/attachments/{row.pk}/thumbnail"
    else:
        assert shown["thumbnail_url"] is None
    if kind == "pdf":
        assert row.text.strip() in ("Hello PDF world", "Scanned text")


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("empty.txt", b"", 400, "empty_file"),
        ("binary.txt", b"\x00\x01\x02binary", 415, "unsupported_type"),
        ("latin1.txt", "café".encode("latin-1"), 415, "unsupported_type"),
        ("program.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", 415, "unsupported_type"),
        ("corrupt.png", files.image("PNG")[:60], 400, "corrupt_image"),
        ("corrupt.jpg", files.image("JPEG")[:200], 400, "corrupt_image"),
        ("fake.png", b"\x89PNG\r\n\x1a\nnot really a png at all", 400, "corrupt_image"),
        ("truncated.pdf", files.pdf("Hello")[:150], 400, "corrupt_pdf"),
        ("garbage.pdf", b"%PDF-1.4\n" + b"\xff" * 300, 400, "corrupt_pdf"),
        ("locked.pdf", files.encrypted_pdf(), 400, "encrypted_pdf"),
        ("bomb.png", files.png_bomb(), 400, "image_too_large"),
    ],
)
async def test_a_bad_file_is_refused_clearly_and_nothing_is_stored(
    api, demo_model, media, name, data, status, code
):
    assert await refused(api, name, data, media) == (status, code)


async def test_an_image_over_the_pixel_limit_is_refused(api, demo_model, media, settings):
    settings.CHAT_ATTACHMENT_MAX_PIXELS = 1000
    assert await refused(api, "big.png", files.image(size=(100, 100)), media) == (
        400,
        "image_too_large",
    )


async def test_a_file_over_the_size_limit_is_refused(api, demo_model, media, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    assert await refused(api, "big.txt", b"a" * 1001, media) == (413, "file_too_large")
    # Far over: refused by its Content-Length before the body is parsed.
    assert await refused(api, "huge.txt", b"a" * 200_000, media) == (413, "file_too_large")


async def test_a_pdf_bomb_is_read_within_its_bounds(api, demo_model, media, settings):
    settings.CHAT_ATTACHMENT_PDF_PAGES = 5
    settings.CHAT_ATTACHMENT_TEXT_CHARS = 60
    shown = await uploaded(api, "many.pdf", files.many_pages_pdf(300))

    row = await Attachment.objects.aget(pk=shown["id"])
    assert len(row.text) <= 60
    assert "Page 0" in row.text and "Page 10" not in row.text


async def test_a_long_text_file_keeps_its_first_characters(api, demo_model, media, settings):
    settings.CHAT_ATTACHMENT_TEXT_CHARS = 10
    shown = await uploaded(api, "long.txt", b"0123456789abcdef")
    assert (await Attachment.objects.aget(pk=shown["id"])).text == "0123456789"


async def test_an_upload_needs_a_file_field(api, demo_model, media):
    body, content_type = files.multipart("x.txt", b"hi", field="other")
    response = await api.request(
        "POST", "/api/attachments/", body=body, headers=sized(content_type, body)
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "missing_file"
    response = await api.post("/api/attachments/", {"file": "x"})
    assert response.status == 400


async def test_a_name_is_shown_not_trusted(api, demo_model, media):
    shown = await uploaded(api, "../../etc/pass\x07wd.txt", b"hi")
    assert shown["name"] == "passwd.txt"
    row = await Attachment.objects.aget(pk=shown["id"])
    assert row.file.name.startswith(f"attachments/{row.owner_id}/")


# Serving: to the owner only, as what it is.


async def test_only_the_owner_gets_the_file_and_its_thumbnail(api, bob_api, demo_model, media):
    data = files.image("PNG")
    shown = await uploaded(api, "photo.png", data)

    response = await api.get(shown["url"])
    assert response.status == 200
    assert await response.body() == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    thumbnail = await api.get(shown["thumbnail_url"])
    assert thumbnail.headers["content-type"] == "image/webp"
    assert (await thumbnail.body())[8:12] == b"WEBP"

    assert (await bob_api.get(shown["url"])).status == 404
    assert (await bob_api.get(shown["thumbnail_url"])).status == 404
    anonymous = await AsgiClient().get(shown["url"])
    assert anonymous.status == 302


async def test_html_in_a_text_file_is_served_as_a_download_of_plain_text(api, demo_model, media):
    shown = await uploaded(api, "page.html", b"<html><script>alert(1)</script></html>")

    response = await api.get(shown["url"])

    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_unsent_upload_can_be_removed_by_its_owner_only(api, bob_api, demo_model, media):
    shown = await uploaded(api, "photo.png", files.image())

    assert (await bob_api.delete(f"/api/attachments/{shown['id']}/")).status == 404
    assert (await api.delete(f"/api/attachments/{shown['id']}/")).status == 204
    assert await Attachment.objects.acount() == 0
    assert stored(media) == []


# Sending: a message claims its attachments.


async def create(api: AsgiClient, **fields) -> dict:
    response = await api.post("/api/conversations/", fields)
    assert response.status == 201
    return await response.json()


async def post(api: AsgiClient, conversation: dict, **fields) -> Response:
    return await api.post(f"/api/conversations/{conversation['id']}/messages/", fields)


async def test_a_message_claims_its_attachments_and_the_demo_names_them(api, demo_model, media):
    image = await uploaded(api, "photo.png", files.image(size=(640, 480)))
    notes = await uploaded(api, "notes.txt", b"The tide comes in twice a day, roughly.")
    conversation = await create(api)

    response = await post(api, conversation, content="Look", attachments=[image["id"], notes["id"]])

    assert response.status == 202
    posted = await response.json()
    assert [a["id"] for a in posted["message"]["attachments"]] == [image["id"], notes["id"]]
    events = await read_events(await api.get(posted["generation"]["stream_url"]))
    text = "".join(event.data["content"] for event in events if event.event == "delta")
    assert "photo.png (image, 640×480)" in text
    assert "notes.txt (text: “The tide comes in twice a day, roughly.”)" in text
    shown = await (await api.get(f"/api/conversations/{conversation['id']}/")).json()
    assert [a["name"] for a in shown["messages"][0]["attachments"]] == ["photo.png", "notes.txt"]
    assert await Attachment.objects.filter(message=None).acount() == 0


@pytest.mark.parametrize("case", ["bobs", "unknown", "twice", "sent", "too_many", "malformed"])
async def test_a_bad_claim_posts_nothing(api, bob_api, demo_model, media, settings, case):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    conversation = await create(api)
    mine = await uploaded(api, "a.txt", b"a")
    ids = {
        "bobs": [(await uploaded(bob_api, "b.txt", b"b"))["id"]],
        "unknown": ["00000000-0000-0000-0000-000000000000"],
        "twice": [mine["id"], mine["id"]],
        "sent": [mine["id"]],
        "too_many": [
            mine["id"],
            *[(await uploaded(api, f"{n}.txt", b"x"))["id"] for n in range(2)],
        ],
        "malformed": ["not-a-uuid"],
    }[case]
    if case == "sent":
        first = await post(api, conversation, content="first", attachments=ids)
        assert first.status == 202
        await generation.wait_all()
    before = await Message.objects.acount()

    response = await post(api, conversation, content="Hi", attachments=ids)

    assert response.status == 400
    code = (await response.json())["error"]["code"]
    assert code == ("too_many_attachments" if case == "too_many" else "invalid_attachment")
    assert await Message.objects.acount() == before
    assert await Attachment.objects.filter(pk=mine["id"], message=None).aexists() == (
        case != "sent"
    )


async def test_attachments_must_be_a_list_of_ids(api, demo_model, media):
    conversation = await create(api)
    response = await post(api, conversation, content="Hi", attachments="nope")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_field"


async def test_the_page_form_sends_attachments_too(api, demo_model, media):
    shown = await uploaded(api, "photo.png", files.image())
    conversation = await create(api)

    response = await api.request(
        "POST",
        f"/c/{conversation['id']}/messages",
        body=f"content=Look&attachments={shown['id']}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status == 302
    await generation.wait_all()
    page = (await (await api.get(f"/c/{conversation['id']}/")).body()).decode()
    assert f'src="/attachments/{shown["id"]}/thumbnail"' in page
    assert f'href="/attachments/{shown["id"]}/"' in page


async def test_without_javascript_files_come_with_the_form(api, demo_model, media):
    conversation = await create(api)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n\r\nRead this\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="n.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nSome notes\r\n"
        f"--{boundary}--\r\n"
    ).encode()

    response = await api.request(
        "POST",
        f"/c/{conversation['id']}/messages",
        body=body,
        headers=sized(f"multipart/form-data; boundary={boundary}", body),
    )

    assert response.status == 302
    await generation.wait_all()
    sent = await Attachment.objects.select_related("message").aget()
    assert (sent.name, sent.message.content) == ("n.txt", "Read this")


def form_with_files(content: str, *files: tuple[str, bytes]) -> tuple[bytes, str]:
    """A composer form posted without JavaScript: the text and the files, as multipart."""
    boundary = "b0undary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n\r\n{content}\r\n'
    parts = [body.encode()]
    for name, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts += [head.encode(), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def test_without_javascript_one_bad_file_stores_none_of_them(api, demo_model, media):
    conversation = await create(api)
    body, content_type = form_with_files(
        "Read these", ("good.txt", b"Fine notes"), ("bad.png", b"\x89PNG\r\n\x1a\n broken")
    )

    response = await api.request(
        "POST", f"/c/{conversation['id']}/messages", body=body, headers=sized(content_type, body)
    )

    assert response.status == 400
    assert await Attachment.objects.acount() == 0
    assert stored(media) == []
    assert await Message.objects.acount() == 0


async def test_without_javascript_a_refused_post_takes_its_files_back(
    api, demo_model, media, settings
):
    settings.CHAT_RATE_LIMITS = {"hour": 1}
    conversation = await create(api)
    await post(api, conversation, content="The one message this hour")
    await generation.wait_all()
    body, content_type = form_with_files("Read this", ("n.txt", b"Some notes"))

    response = await api.request(
        "POST", f"/c/{conversation['id']}/messages", body=body, headers=sized(content_type, body)
    )

    assert response.status == 429
    assert await Attachment.objects.acount() == 0
    assert stored(media) == []


# What goes upstream.


def asked(upstream) -> dict:
    """The answer's request (the title's comes after it)."""
    return upstream.requests[0]["body"]


async def test_a_vision_model_gets_image_parts_and_text_blocks(api, upstream, media, settings):
    settings.CHAT_VISION_MODELS = {"gpt-test"}
    data = files.image("PNG")
    image = await uploaded(api, "photo.png", data)
    notes = await uploaded(api, "notes.md", b"# Plan\n```py\nx = 1\n```\n")
    conversation = await create(api)

    await post(api, conversation, content="What is this?", attachments=[image["id"], notes["id"]])
    await generation.wait_all()

    content = asked(upstream)["messages"][-1]["content"]
    assert content[0]["type"] == "text"
    assert content[0]["text"] == (
        "What is this?\n\n[Attached image: photo.png (64×48)]\n\n"
        "[Attached text file: notes.md]\n````\n# Plan\n```py\nx = 1\n```\n\n````"
    )
    assert content[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(data).decode()},
    }
    # The stored request refers to the image; its bytes are not in the database.
    stored_request = (
        await Message.objects.filter(role="assistant").select_related("generation").aget()
    ).generation.request
    assert (
        stored_request["messages"][-1]["content"][1]["image_url"]["url"]
        == f"attachment:{image['id']}"
    )


async def test_a_model_without_vision_is_told_the_image_is_not_shown(
    api, upstream, media, settings
):
    settings.CHAT_VISION_MODELS = set()
    image = await uploaded(api, "photo.png", files.image())
    conversation = await create(api)

    await post(api, conversation, content="See?", attachments=[image["id"]])
    await generation.wait_all()

    assert asked(upstream)["messages"][-1]["content"] == (
        "See?\n\n[Image not shown: photo.png (64×48); this model does not see images]"
    )


async def test_a_question_with_two_files_goes_upstream_once_in_the_turns_after_it(
    api, upstream, media, settings
):
    settings.CHAT_VISION_MODELS = set()
    image = await uploaded(api, "photo.png", files.image())
    notes = await uploaded(api, "notes.md", b"plan")
    conversation = await create(api)
    await post(api, conversation, content="See?", attachments=[image["id"], notes["id"]])
    await generation.wait_all()

    await post(api, conversation, content="And then?")
    await generation.wait_all()

    (later,) = [
        request["body"]["messages"]
        for request in upstream.requests
        if request["body"]["messages"][-1]["content"] == "And then?"
    ]
    said = [message for message in later if message["role"] != "system"]
    assert [message["role"] for message in said] == ["user", "assistant", "user"]
    assert said[0]["content"] == (
        "See?\n\n[Image not shown: photo.png (64×48); this model does not see images]"
        "\n\n[Attached text file: notes.md]\n```\nplan\n```"
    )


async def test_a_long_file_is_trimmed_to_the_context(api, upstream, media, settings):
    settings.CHAT_CONTEXT_TOKENS = 200
    notes = await uploaded(api, "long.txt", ("word " * 5000).encode())
    conversation = await create(api)

    await post(api, conversation, content="Summarise", attachments=[notes["id"]])
    await generation.wait_all()

    content = asked(upstream)["messages"][-1]["content"]
    assert content.startswith("Summarise\n\n[Attached text file: long.txt]\n```\nword word")
    assert content.endswith("[The rest was left out to fit the context.]")
    assert len(content) < 1000


async def test_files_fill_only_the_context_the_system_prompt_leaves(api, upstream, media, settings):
    settings.CHAT_CONTEXT_TOKENS = 300
    notes = await uploaded(api, "long.txt", ("word " * 5000).encode())
    conversation = await create(api, system_prompt="Be brief. " * 40)

    await post(api, conversation, content="Summarise", attachments=[notes["id"]])
    await generation.wait_all()

    sent = asked(upstream)["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[1]["content"].endswith("[The rest was left out to fit the context.]")
    assert context.message_tokens(sent, "gpt-test")[0] <= 300


# Share links and the sweeper.


async def shared_exchange(alice, api: AsgiClient) -> tuple[ShareLink, str, str]:
    """A shared branch (question, answer) with an image, and another branch's image."""
    on_branch = await uploaded(api, "shown.png", files.image())
    off_branch = await uploaded(api, "hidden.png", files.image())

    def make() -> ShareLink:
        conversation = Conversation.objects.create(owner=alice, model="demo")
        question = Message.objects.create(conversation=conversation, role="user", content="Hi")
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content="Yes", parent=question
        )
        other = Message.objects.create(conversation=conversation, role="user", content="Hm")
        Attachment.objects.filter(pk=on_branch["id"]).update(message=question)
        Attachment.objects.filter(pk=off_branch["id"]).update(message=other)
        return ShareLink.objects.create(
            conversation=conversation, leaf=answer, token=secrets.token_urlsafe(32)
        )

    return await sync_to_async(make)(), on_branch["id"], off_branch["id"]


async def test_a_share_link_serves_the_attachments_on_its_branch(alice, api, demo_model, media):
    link, shown, hidden = await shared_exchange(alice, api)
    anyone = AsgiClient()

    response = await anyone.get(f"/s/{link.token}/attachments/{shown}/")
    assert response.status == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    # As the shared page itself: never kept by a cache, never indexed.
    assert "no-store" in response.headers["cache-control"]
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    assert (await anyone.get(f"/s/{link.token}/attachments/{shown}/thumbnail")).status == 200
    assert (await anyone.get(f"/s/{link.token}/attachments/{hidden}/")).status == 404
    assert (await anyone.get(f"/s/wrong-token/attachments/{shown}/")).status == 404

    link.revoked_at = timezone.now()
    await link.asave()
    assert (await anyone.get(f"/s/{link.token}/attachments/{shown}/")).status == 404


async def test_a_share_link_serves_no_other_conversations_file(alice, api, demo_model, media):
    link, _, _ = await shared_exchange(alice, api)
    unsent = await uploaded(api, "unsent.png", files.image())

    assert (await AsgiClient().get(f"/s/{link.token}/attachments/{unsent['id']}/")).status == 404


async def test_unsent_uploads_are_swept_after_a_day_with_their_files(api, demo_model, media):
    old = await uploaded(api, "old.png", files.image())
    new = await uploaded(api, "new.png", files.image())
    await Attachment.objects.filter(pk=old["id"]).aupdate(
        created_at=timezone.now() - timedelta(days=2)
    )

    assert await sync_to_async(attachments.sweep_unsent)() == 1

    assert [str(pk) async for pk in Attachment.objects.values_list("pk", flat=True)] == [new["id"]]
    assert all(old["id"] not in path.name for path in stored(media))
    assert len(stored(media)) == 2  # the new one's file and thumbnail


async def test_deleting_a_conversation_deletes_its_files(api, demo_model, media):
    image = await uploaded(api, "photo.png", files.image())
    conversation = await create(api)
    await post(api, conversation, content="Look", attachments=[image["id"]])
    await generation.wait_all()

    assert (await api.delete(f"/api/conversations/{conversation['id']}/")).status == 204

    assert await Attachment.objects.acount() == 0
    assert stored(media) == []


async def test_an_edited_question_keeps_its_files_and_both_versions_show_them(
    api, upstream, media, settings
):
    settings.CHAT_VISION_MODELS = set()
    image = await uploaded(api, "photo.png", files.image())
    conversation = await create(api)
    await post(api, conversation, content="See?", attachments=[image["id"]])
    await generation.wait_all()
    first = await Message.objects.aget(role="user")

    edited = await api.post(
        f"/api/conversations/{conversation['id']}/regenerate",
        {"message_id": str(first.pk), "content": "And now?"},
    )
    await generation.wait_all()

    assert edited.status == 202
    questions = [m async for m in Message.objects.filter(role="user").order_by("created_at")]
    names = [[a.name async for a in q.attachments.all()] for q in questions]
    assert names == [["photo.png"], ["photo.png"]]
    assert upstream.requests[-1]["body"]["messages"][-1]["content"] == (
        "And now?\n\n[Image not shown: photo.png (64×48); this model does not see images]"
    )
    files_before = stored(media)
    await Attachment.objects.filter(message=first).adelete()
    assert stored(media) == files_before  # the edited version still shows them
    assert (await api.delete(f"/api/conversations/{conversation['id']}/")).status == 204
    assert stored(media) == []


async def test_exports_list_attachments_without_their_bytes(api, demo_model, media):
    image = await uploaded(api, "photo.png", files.image())
    conversation = await create(api)
    await post(api, conversation, content="Look", attachments=[image["id"]])
    await generation.wait_all()

    markdown = (await (await api.get(f"/c/{conversation['id']}/export.md")).body()).decode()
    exported = await (await api.get(f"/c/{conversation['id']}/export.json")).json()

    assert re.search(r"- Attached: `photo.png` \(image, image/png, [\d.]+ \w+\)", markdown)
    assert exported["messages"][0]["attachments"][0]["name"] == "photo.png"


def test_an_image_part_costs_a_fixed_number_of_tokens_not_its_bytes():
    text = {"role": "user", "content": "Look"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    with_image = {"role": "user", "content": [{"type": "text", "text": "Look"}, image]}

    plain, _ = context.message_tokens([text], "gpt-4o-mini")
    parts, _ = context.message_tokens([with_image], "gpt-4o-mini")

    assert parts == plain + context.IMAGE_TOKENS
    assert context.fit([with_image], "gpt-4o-mini", 100) == [with_image]


async def test_a_stored_request_gets_only_its_owners_images(api, alice, bob, media):
    theirs = await sync_to_async(attachments.store)(
        bob, "theirs.png", files.image(), attachments.check(files.image())
    )
    mine = await uploaded(api, "mine.png", files.image())
    request = {
        "model": "gpt-test",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Both?"},
                    {"type": "image_url", "image_url": {"url": f"attachment:{mine['id']}"}},
                    {"type": "image_url", "image_url": {"url": f"attachment:{theirs.pk}"}},
                ],
            }
        ],
    }

    sent = await sync_to_async(attachment_prompt.expanded)(request, alice)

    parts = sent["messages"][0]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2] == {"type": "text", "text": "[An image that has since been deleted.]"}
