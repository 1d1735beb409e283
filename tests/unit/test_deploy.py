"""`deploy/` checked offline: the compose file against the Compose Specification's schema
(check-jsonschema's vendored copy), the Kubernetes manifests against Kubernetes' own schemas in
strict mode (kubernetes-validate's vendored copies), KEDA's and kustomize's against ours
(`deploy/schemas/`), and all of them against the code: commands the CLI takes, settings that
exist, queues the topology declares, names that point at something."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from shared.bus.topology import QUEUES
from shared.cli import main
from shared.settings import Settings
from tests.support import ROOT

DEPLOY = ROOT / "deploy"
#: The Kubernetes version the manifests are checked against (kubernetes-validate ships its schemas).
KUBERNETES = "1.30.0"
OURS = {  # kinds no Kubernetes schema covers: (apiVersion, kind) -> our schema
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "kustomization.json",
}


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(f"CAMPAIGNS_{name.upper()}")
    return names


SETTINGS = _setting_names()


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _schema_problems(doc: dict[str, Any]) -> list[str]:
    """What the schema of `doc`'s kind finds wrong in it (strict: unknown fields too)."""
    ours = OURS.get((doc.get("apiVersion"), doc.get("kind")))
    if ours is not None:
        schema = json.loads((DEPLOY / "schemas" / ours).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def _cli_takes(args: list[str]) -> bool:
    """Whether `campaigns ARGS` is a command line the CLI takes (subcommands and options checked)."""
    command: click.Command = main
    try:
        context = main.make_context("campaigns", list(args))
        while isinstance(command, click.Group):
            rest = [*getattr(context, "_protected_args", []), *context.args]
            if not rest:
                break
            name, sub, rest = command.resolve_command(context, rest)
            assert sub is not None
            assert name is not None
            context = sub.make_context(name, rest, parent=context)
            command = sub
    except click.ClickException:
        return False
    return True


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    template = spec.get("template", {}).get("spec", {})
    return list(template.get("containers", []))


# --- compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_the_compose_file_follows_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_finds_a_mistake(tmp_path):
    broken = _compose()
    broken["services"]["api"]["depends_on_typo"] = ["postgres"]
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert "depends_on_typo" in result.stdout + result.stderr


def test_compose_stops_the_dispatchers_then_the_sandbox_then_the_tracker():
    # Compose stops a service before those it depends on: as `campaigns up` does, the dispatchers
    # drain into a sandbox still answering, whose last callbacks reach a tracker still running
    services = _compose()["services"]
    for channel in ("sms", "email", "voice"):
        assert "sandbox" in services[f"dispatcher-{channel}"]["depends_on"]
    assert "tracker" in services["sandbox"]["depends_on"]


def test_the_compose_services_run_commands_and_settings_that_exist():
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        if "command" in service:
            assert _cli_takes(service["command"]), (name, service["command"])
        for target in service.get("depends_on", {}):
            assert target in services, (name, target)
        for key in service.get("environment", {}):
            if key.startswith(("CAMPAIGNS_", "TWILIO_")):
                assert key in SETTINGS, (name, key)


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_each_manifest_follows_its_schema(name, doc):
    assert _schema_problems(doc) == [], name


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("Deployment", lambda d: d["spec"]["template"]["spec"].update({"containerz": []})),
        ("Service", lambda d: d["spec"]["ports"][0].update({"port": "eighty"})),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update({"queueNme": "x"})),
        ("ScaledObject", lambda d: d["spec"].update({"maxReplicas": 3})),
        ("TriggerAuthentication", lambda d: d["spec"]["secretTargetRef"][0].pop("key")),
        ("Kustomization", lambda d: d.update({"resource": []})),
    ],
)
def test_the_schemas_find_a_mistake(kind, change):
    doc = json.loads(json.dumps(next(d for _n, d in _manifests() if d["kind"] == kind)))
    change(doc)
    assert _schema_problems(doc) != []


def test_the_kustomization_lists_every_manifest_and_only_those():
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_the_manifests_point_at_what_exists():
    docs = [doc for _name, doc in _manifests()]

    def named(kind: str) -> dict[str, dict[str, Any]]:
        return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}

    deployments, services, secrets = named("Deployment"), named("Service"), named("Secret")
    configmaps, auths = named("ConfigMap"), named("TriggerAuthentication")
    for scaled in named("ScaledObject").values():
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["queueName"] in QUEUES  # a queue the topology declares
            assert trigger["authenticationRef"]["name"] in auths
    for auth in auths.values():
        for ref in auth["spec"].get("secretTargetRef", []):
            assert ref["key"] in secrets[ref["name"]]["stringData"]
    for source in [*configmaps.values(), *secrets.values()]:
        assert set(source.get("data") or source.get("stringData") or {}) <= SETTINGS, source["metadata"]["name"]
    for name, doc in [*deployments.items(), *named("Job").items()]:
        for container in _containers(doc):
            assert container["image"] == "campaigns", name  # the name kustomization's `images` rewrites
            assert _cli_takes(container.get("args", [])), (name, container.get("args"))
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in (configmaps if "configMapRef" in source else secrets), (name, ref)
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                assert port is None or port in ports, (name, probe, port)
    for name, service in services.items():
        selector = service["spec"]["selector"]
        targets = [d for d in deployments.values() if selector.items() <= _labels(d).items()]
        assert targets, name
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str):
                assert any(target in {p["name"] for p in c.get("ports", [])} for d in targets for c in _containers(d))


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def test_a_command_line_the_cli_does_not_take_is_found():
    assert _cli_takes(["dispatcher", "--channel", "sms"])
    assert not _cli_takes(["dispatcher", "--channel", "fax"])
    assert not _cli_takes(["dispatch"])


def test_the_vendored_schemas_are_valid_schemas():
    for path in sorted((DEPLOY / "schemas").glob("*.json")):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_every_yaml_under_deploy_parses():
    for path in sorted(Path(DEPLOY).rglob("*.yaml")):
        list(yaml.safe_load_all(path.read_text()))
