import pytest
from hypothesis import given
from hypothesis import strategies as st

from motadata_actors import SubjectError
from motadata_actors.mailbox import (
    MAX_TOKEN_LENGTH,
    Subject,
    agent_inbox,
    agent_subject,
    check_id,
    dlq_subject,
    event_subject,
    parse_subject,
    workflow_subject,
)

ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=MAX_TOKEN_LENGTH
)
tokens = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters=".*>\x85\xa0"
    ),
    min_size=1,
    max_size=MAX_TOKEN_LENGTH,
).filter(lambda t: not any(c.isspace() for c in t))
bad_tokens = st.one_of(
    st.just(""),
    st.text(min_size=MAX_TOKEN_LENGTH + 1, max_size=MAX_TOKEN_LENGTH + 20, alphabet="abc"),
    st.builds(
        lambda a, c, b: a + c + b,
        ids,
        st.sampled_from([".", "*", ">", " ", "\t", "\n", "\x00", "\x7f"]),
        ids,
    ),
)
bad_ids = st.one_of(
    bad_tokens, st.builds(lambda a, c: a + c, ids, st.sampled_from(["A", "é", "/", ":", "Z"]))
)


@given(ids, ids, ids)
def test_agent_subjects_round_trip(sender: str, to: str, tenant: str) -> None:
    subject = agent_subject(sender, to, tenant)
    assert subject == f"sdk.agent.{sender}.{to}.{tenant}"
    parsed = parse_subject(subject)
    assert parsed == Subject("agent", tenant, to, sender)
    assert str(parsed) == subject


@given(tokens, ids)
def test_event_workflow_subjects_round_trip(token: str, tenant: str) -> None:
    for build, kind in ((event_subject, "events"), (workflow_subject, "workflow")):
        subject = build(token, tenant)
        parsed = parse_subject(subject)
        assert (parsed.kind, parsed.target, parsed.tenant) == (kind, token, tenant)
        assert str(parsed) == subject


@given(ids, ids)
def test_dlq_subjects_round_trip(to: str, tenant: str) -> None:
    parsed = parse_subject(dlq_subject(to, tenant))
    assert parsed == Subject("dlq", tenant, to)


@given(bad_ids, ids)
def test_bad_ids_are_rejected_everywhere(bad: str, good: str) -> None:
    for call in (
        lambda: agent_subject(bad, good, good),
        lambda: agent_subject(good, bad, good),
        lambda: agent_subject(good, good, bad),
        lambda: agent_inbox(bad, good),
        lambda: dlq_subject(good, bad),
        lambda: event_subject(good, bad),
    ):
        with pytest.raises(SubjectError):
            call()


@given(bad_tokens, ids)
def test_bad_tokens_are_rejected(bad: str, tenant: str) -> None:
    with pytest.raises(SubjectError):
        event_subject(bad, tenant)
    with pytest.raises(SubjectError):
        workflow_subject(bad, tenant)


def test_agent_inbox_is_a_wildcard_over_senders() -> None:
    assert agent_inbox("writer", "acme") == "sdk.agent.*.writer.acme"


def test_error_names_the_token_and_the_rule() -> None:
    with pytest.raises(SubjectError, match=r"tenant 'Acme' must use only lowercase"):
        check_id("Acme", "tenant")
    with pytest.raises(SubjectError, match=r"agent name 'a\.b' may not contain"):
        agent_subject("x", "a.b", "acme")
    with pytest.raises(SubjectError, match="must be a str"):
        check_id(3, "tenant")


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "sdk",
        "sdk.agent.a.b",
        "sdk.agent.a.b.c.d",
        "foo.agent.a.b.c",
        "sdk.other.a.b",
        "sdk.agent.A.b.c",
        "sdk.events.*.t",
    ],
)
def test_parse_rejects_non_sdk_subjects(subject: str) -> None:
    with pytest.raises(SubjectError):
        parse_subject(subject)
