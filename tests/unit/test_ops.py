"""Ops: frozen values that know their inverse and survive a trip through the journal."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostnet import ops
from hostnet.backends.fake import FakeKernel
from hostnet.ops import (
    SAME_NS,
    AddLink,
    Adopt,
    BindPort,
    CreateNamespace,
    DelLink,
    MoveLink,
    Op,
    Release,
    SetLinkUp,
    UnbindPort,
    inverse_plan,
    plan_from_json,
    plan_to_json,
)
from hostnet.stores.local import LocalStore

#: Every concrete Op class hostnet itself defines (drivers may add their own elsewhere).
OP_CLASSES = sorted(
    (cls for cls in ops._REGISTRY.values() if cls.__module__ == "hostnet.ops"),
    key=lambda cls: cls.__name__,
)

names = st.text(max_size=20)
namespaces = st.one_of(st.none(), st.text(min_size=1, max_size=20))

_SCALARS = {
    "str": names,
    "str | None": st.one_of(st.none(), names),
    "int": st.integers(min_value=-(2**40), max_value=2**40),
    "int | None": st.one_of(st.none(), st.integers(min_value=0, max_value=2**32)),
    "bool": st.booleans(),
}


def _type_strategy(cls: type[Op], name: str, type_: str) -> st.SearchStrategy:
    if type_ in _SCALARS:
        return _SCALARS[type_]
    if type_.endswith(" | None"):
        return st.one_of(st.none(), _type_strategy(cls, name, type_.removesuffix(" | None")))
    if type_.startswith("tuple[") and type_.endswith(", ...]"):
        item = _type_strategy(cls, name, type_.removeprefix("tuple[").removesuffix(", ...]"))
        return st.lists(item, max_size=3).map(tuple)
    if type_ in ops._REGISTRY:
        return _op_strategy(ops._REGISTRY[type_])
    raise AssertionError(f"no strategy for {cls.__name__}.{name}: {type_}")


def _field_strategy(cls: type[Op], field: attrs.Attribute) -> st.SearchStrategy:
    if field.name == "ns":
        return namespaces if field.type == "str | None" else st.text(min_size=1, max_size=20)
    if field.name in ("peer_ns", "parent_ns"):
        return st.one_of(st.just(SAME_NS), namespaces)
    return _type_strategy(cls, field.name, str(field.type))


def _op_strategy(cls: type[Op]) -> st.SearchStrategy[Op]:
    if cls is DelLink:
        # A DelLink that can be undone carries the AddLink that recreates its link.
        return st.deferred(lambda: _op_strategy(AddLink)).map(lambda add: add.inverse())
    fields = {a.name: _field_strategy(cls, a) for a in attrs.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


any_op = st.sampled_from(OP_CLASSES).flatmap(_op_strategy)


def test_the_op_classes_are_the_ones_the_backends_model() -> None:
    names_ = {cls.__name__ for cls in OP_CLASSES}
    assert {"CreateNamespace", "AddLink", "DelLink", "BindPort", "NftBatch", "Adopt"} <= names_
    for cls in OP_CLASSES:
        assert hasattr(FakeKernel, f"_apply_{cls.__name__}"), cls


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_inverse_of_inverse_is_the_op(cls: type[Op], data: st.DataObject) -> None:
    op = data.draw(_op_strategy(cls))
    assert op.inverse().inverse() == op


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_json_roundtrip(cls: type[Op], data: st.DataObject) -> None:
    op = data.draw(_op_strategy(cls))
    assert Op.from_json(op.to_json()) == op
    # and through real JSON text, as the journal stores it
    assert Op.from_json(json.loads(json.dumps(op.to_json()))) == op


@given(any_op)
def test_undoing_a_destructive_op_never_destroys(op: Op) -> None:
    if op.destructive:
        assert not op.inverse().destructive


@given(any_op)
def test_inverse_acts_in_the_same_namespace_except_moves(op: Op) -> None:
    inverse = op.inverse()
    if isinstance(op, MoveLink):
        assert (inverse.ns, inverse.to_ns) == (op.to_ns, op.ns)
    else:
        assert inverse.ns == op.ns


@given(st.lists(any_op, max_size=8))
def test_plan_json_roundtrip(plan: list[Op]) -> None:
    text = json.dumps(plan_to_json(tuple(plan)))
    assert plan_from_json(json.loads(text)) == tuple(plan)


@given(st.lists(any_op, max_size=8))
def test_inverse_plan_undoes_in_reverse_order(plan: list[Op]) -> None:
    undo = inverse_plan(tuple(plan))
    assert undo == tuple(op.inverse() for op in reversed(plan))
    assert inverse_plan(undo) == tuple(plan)


def test_inverse_plan_of_a_concrete_plan() -> None:
    plan = (
        CreateNamespace(ns="app1"),
        SetLinkUp(ns="app1", name="lo", up=False, was_up=True),
        BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
    )
    assert inverse_plan(plan) == (
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
        SetLinkUp(ns="app1", name="lo", up=True, was_up=False),
        ops.DeleteNamespace(ns="app1"),
    )
    assert inverse_plan(()) == ()


def test_plan_survives_the_journal(tmp_path) -> None:
    plan = (
        CreateNamespace(ns="app1"),
        AddLink(ns=None, name="veth0", kind="veth", peer="eth0", peer_ns="app1", mtu=1400),
        AddLink(ns="app1", name="br0", kind="bridge").inverse(),
    )
    store = LocalStore(tmp_path)
    try:
        with store.transaction() as tx:
            tx.journal_begin(
                id="j1", kind="setup", owner="[]", pid=1, started=0.0, plan=plan_to_json(plan)
            )
        (entry,) = store.read(lambda tx: tx.journals())
        assert plan_from_json(entry["plan"]) == plan
    finally:
        store.close()


def test_dellink_without_recreate_cannot_be_inverted() -> None:
    op = DelLink(ns="app1", name="eth0")
    with pytest.raises(ValueError, match="eth0"):
        op.inverse()


def test_adopting_is_undone_without_deleting_anything() -> None:
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="theirs"))
    before = kernel.dump()
    adopt = Adopt(ns="theirs", kind="namespace", name="theirs")
    assert not adopt.destructive and not adopt.inverse().destructive
    assert adopt.inverse() == Release(ns="theirs", kind="namespace", name="theirs")
    kernel.apply(adopt)
    kernel.apply(adopt.inverse())
    assert kernel.dump() == before


def test_from_json_fills_defaults_for_fields_an_older_journal_lacks() -> None:
    op = Op.from_json({"op": "AddLink", "ns": "a", "name": "br0", "kind": "bridge"})
    assert op == AddLink(ns="a", name="br0", kind="bridge")
    assert op.peer_ns == SAME_NS and op.up is False


def test_ops_are_frozen_values() -> None:
    op = BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=80)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        op.port = 81  # type: ignore[misc]
    assert op == BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=80)
    assert hash(op) == hash(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=80))
    with pytest.raises(TypeError):
        BindPort(None, "tcp", "0.0.0.0", 80)  # type: ignore[misc]  # keyword-only


def test_describe_reads_well() -> None:
    assert str(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080)) == (
        "[<root>] BindPort(protocol='tcp', address='0.0.0.0', port=8080)"
    )
    assert CreateNamespace(ns="app1").describe() == "[app1] CreateNamespace()"
    # defaults are left out, and a nested op does not repeat itself
    add = AddLink(ns="app1", name="eth0", kind="veth", peer="veth9", peer_ns=None)
    assert add.describe() == (
        "[app1] AddLink(name='eth0', kind='veth', peer='veth9', peer_ns=None)"
    )
    assert add.inverse().describe() == "[app1] DelLink(name='eth0')"


def test_describe_an_nft_batch_summarises_its_commands() -> None:
    table = {"family": "inet", "name": "hostnet"}
    batch = ops.NftBatch(
        ns="h1",
        commands=json.dumps({"nftables": [{"add": {"table": table}}]}),
        undo=json.dumps({"nftables": [{"delete": {"table": table}}]}),
    )
    text = batch.describe()
    assert text.startswith("[h1] NftBatch(")
    assert "hostnet" in text and "\n" not in text
    assert "delete" in batch.inverse().describe()


@pytest.mark.parametrize(
    "commands",
    [
        "0",
        "[1]",
        '"text"',
        '{"nftables": 5}',
        '{"nftables": [1]}',
        '{"nftables": [{"add": {"table": "x"}}]}',
    ],
)
def test_describe_never_fails_on_malformed_nft_commands(commands: str) -> None:
    op = ops.NftBatch(ns=None, commands=commands, undo="")
    assert str(op).startswith("[<root>] NftBatch(")


@pytest.mark.parametrize("commands", ["", "not json", "{}", '{"nftables": []}'])
def test_describe_of_an_nft_batch_without_commands(commands: str) -> None:
    assert str(ops.NftBatch(ns="h1", commands=commands, undo="")) == "[h1] NftBatch()"


@given(any_op)
def test_describe_names_the_op_and_its_namespace(op: Op) -> None:
    if type(op).describe is not Op.describe:
        return  # a class with its own summary (NftBatch) is tested on its own
    text = op.describe()
    assert type(op).__name__ in text
    assert text.startswith(f"[{op.ns}]" if op.ns is not None else "[<root>]")
    for field in attrs.fields(type(op)):
        value = getattr(op, field.name)
        if field.name != "ns" and value != field.default and not isinstance(value, Op):
            assert f"{field.name}={value!r}" in text


def test_merge_nft_forgets_the_flows_of_a_namespace_once_and_last() -> None:
    plan = (
        ops.ForgetFlows(ns="h", addresses=("10.0.0.2",)),
        ops.DelLink(ns="h", name="veth1"),
        ops.ForgetFlows(ns="h", addresses=("10.0.0.3", "10.0.0.2"), ports=("udp/53",)),
        ops.ForgetFlows(ns="other", addresses=("10.1.0.2",)),
        ops.DelLink(ns="h", name="veth2"),
    )
    merged = ops.merge_nft(plan)
    assert merged == (
        ops.DelLink(ns="h", name="veth1"),
        ops.DelLink(ns="h", name="veth2"),
        ops.ForgetFlows(ns="h", addresses=("10.0.0.2", "10.0.0.3"), ports=("udp/53",)),
        ops.ForgetFlows(ns="other", addresses=("10.1.0.2",)),
    )
    # set up first, forgotten last: the pair is each other's inverse
    track = ops.TrackFlows(ns="h", addresses=("10.0.0.2",))
    assert ops.inverse_plan((track, ops.AddLink(ns="h", name="b", kind="bridge")))[-1] == (
        track.inverse()
    )


def test_a_second_op_class_of_a_name_is_refused() -> None:
    """Recorded plans name ops by class name: a plugin's ``class AddRoute(AddRoute)``
    would have made every journaled AddRoute load as the plugin's class."""
    from hostnet import ops

    with pytest.raises(TypeError, match="an Op named AddRoute exists already"):

        class AddRoute(ops.AddRoute):
            pass

    assert ops.Op.from_json({"op": "AddRoute", "ns": None, "dst": "0.0.0.0/0"}).__class__ is (
        ops.AddRoute
    )
