"""Emails that come back, read: bounce reports (RFC 3464) and replies."""

from __future__ import annotations

from email.message import EmailMessage

from shared.domain.inbound_email import parse, thread_of

OURS = "<dlv_0123456789abcdef@acme.example>"


def _report(original: str, *, action: str = "failed", status: str = "5.1.1", rfc822: bool = False) -> bytes:
    if rfc822:
        quoted = f"Content-Type: message/rfc822\r\n\r\nFrom: news@acme.example\r\nMessage-ID: {original}\r\n\r\nHi\r\n"
    else:
        quoted = f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original}\r\nSubject: Hi\r\n"
    return (
        "From: MAILER-DAEMON@mx.example\r\nMessage-ID: <report-1@mx.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nUndelivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; ann@example.com\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 user unknown\r\n\r\n"
        f"--B\r\n{quoted}--B--\r\n"
    ).encode()


def test_a_hard_bounce_names_the_original_message_whichever_way_it_is_quoted():
    for rfc822 in (False, True):
        mail = parse(_report(OURS, rfc822=rfc822))
        assert (mail.kind, mail.about, mail.status) == ("bounce", [OURS], "5.1.1")
        assert mail.diagnostic == "smtp; 550 user unknown"
        assert mail.dedupe_key == "<report-1@mx.example>"


def test_a_delay_notice_is_not_a_bounce():
    assert parse(_report(OURS, action="delayed", status="4.4.7")).kind == "delay"


def test_a_reply_names_what_it_answers_and_keeps_only_the_new_text():
    reply = EmailMessage()
    reply["From"] = "Ann Lee <Ann@Example.com>"
    reply["Subject"] = "Re: Hi"
    reply["In-Reply-To"] = OURS
    reply["References"] = "<older@acme.example> " + OURS
    reply.set_content("Yes, Thursday works.\nThanks\n\nOn Mon, 23 Nov 2026, Acme wrote:\n> Hi Ann\n> Can we meet?")
    mail = parse(bytes(reply))
    assert (mail.kind, mail.sender, mail.text) == ("reply", "ann@example.com", "Yes, Thursday works.\nThanks")
    assert OURS in mail.about
    assert mail.dedupe_key.startswith("sha256:")  # no Message-ID of its own: the content is the key


def test_an_email_about_nothing_we_sent_is_other():
    mail = EmailMessage()
    mail["From"] = "someone@example.com"
    mail.set_content("hello")
    assert parse(bytes(mail)).kind == "other"


def test_an_answer_continues_the_thread_from_references_or_else_in_reply_to():
    reply = parse(b"From: a@x.com\r\nMessage-ID: <r1@x.com>\r\nIn-Reply-To: <dlv_1@us.com>\r\n\r\nHi\r\n")
    assert thread_of(reply) == "<dlv_1@us.com>"
    threaded = parse(
        b"From: a@x.com\r\nMessage-ID: <r2@x.com>\r\nIn-Reply-To: <a2@us.com>\r\n"
        b"References: <dlv_1@us.com> <r1@x.com> <a2@us.com>\r\n\r\nHi\r\n"
    )
    assert thread_of(threaded) == "<dlv_1@us.com> <r1@x.com> <a2@us.com>"
    ambiguous = parse(b"From: a@x.com\r\nMessage-ID: <r3@x.com>\r\nIn-Reply-To: <p1@x.com> <p2@x.com>\r\n\r\nHi\r\n")
    assert thread_of(ambiguous) == ""
