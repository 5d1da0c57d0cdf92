"""Fast checks (part of `make test`) that the image definitions agree with each other and with the
binaries; `make images` itself (mmdebstrap + umoci, needs the Debian mirror, ~1.5 min) builds and
smoke-tests the images. Checked here: the Dockerfile's targets are the images build-images.sh
makes; the kustomizations reference exactly those images at the binaries' version; the runtime
package list covers every library the built binaries load; runtime stages run as 65532 with no
shell."""
import os
import re
import subprocess

import pytest
import yaml

from harness import BUILD_DIR, SOURCE_DIR

SCRIPT = os.path.join(SOURCE_DIR, "scripts", "build-images.sh")
DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")


def _script_programs():
    text = open(SCRIPT).read()
    block = text[text.index("programs=("):text.index(")", text.index("programs=("))]
    return dict(re.findall(r'"([a-z-]+):([^"]+)"', block))


def _version():
    out = subprocess.run([os.path.join(BUILD_DIR, "src/server/inferencecache-server"), "--version"],
                         capture_output=True, text=True, timeout=30).stdout
    return re.search(r"version (\S+) ", out).group(1)


def test_dockerfile_targets_are_the_images_make_images_builds():
    targets = re.findall(r"^FROM runtime AS (\S+)$", open(DOCKERFILE).read(), re.M)
    progs = _script_programs()
    assert set(targets) == set(progs)
    text = open(DOCKERFILE).read()
    for name in targets:
        exe = os.path.basename(progs[name])
        assert 'ENTRYPOINT ["/usr/local/bin/%s"]' % exe in text
        assert "/build/%s /usr/local/bin/%s" % (progs[name], exe) in text
    assert "FROM scratch AS runtime" in text and "USER 65532:65532" in text
    assert "images/runtime-packages.txt" in text


def test_runtime_packages_cover_every_library_the_binaries_load():
    listed = set()
    for line in open(os.path.join(SOURCE_DIR, "images", "runtime-packages.txt")):
        if not line.startswith("#"):
            listed |= set(line.split())
    paths = set()
    for rel in _script_programs().values():
        b = os.path.join(BUILD_DIR, rel)
        if not os.path.exists(b):
            continue
        out = subprocess.run(["ldd", b], capture_output=True, text=True, timeout=30).stdout
        for m in re.finditer(r"=> (/\S+)|^\s*(/\S+)", out, re.M):
            p = m.group(1) or m.group(2)
            real = os.path.realpath(p)
            paths |= {p, real, real.removeprefix("/usr"), "/usr" + real, p.removeprefix("/usr"), "/usr" + p}
    r = subprocess.run(["dpkg", "-S"] + sorted(paths), capture_output=True, text=True, timeout=120)
    owners = {}
    for line in r.stdout.splitlines():
        pkgs, path = line.split(": ", 1)
        owners[path] = {p.strip().split(":")[0] for p in pkgs.split(",")}
    needed = set().union(*owners.values())
    assert needed, "dpkg -S found none of the libraries"
    assert needed <= listed, "missing from images/runtime-packages.txt: %s" % sorted(needed - listed)


def _render(path):
    p = subprocess.run(["kubectl", "kustomize", os.path.join(SOURCE_DIR, path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return list(yaml.safe_load_all(p.stdout))


def _containers(doc):
    spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec, (spec.get("containers") or []) + (spec.get("initContainers") or [])


@pytest.mark.skipif(not os.path.exists("/usr/bin/kubectl"), reason="kubectl not installed")
def test_install_references_our_images_at_this_version_as_65532():
    version = _version()
    progs = _script_programs()
    images = set()
    for doc in _render("config/default"):
        if doc.get("kind") != "Deployment":
            continue
        spec, cs = _containers(doc)
        assert spec["securityContext"]["runAsUser"] == 65532
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in cs:
            assert c.get("imagePullPolicy") in ("IfNotPresent", "Always", "Never"), c["name"]
            images.add(c["image"])
            for e in c.get("env") or []:
                if e["name"] == "KVEVENT_SUBSCRIBER_IMAGE":
                    images.add(e["value"])
                    assert "--kvevent-subscriber-image=$(KVEVENT_SUBSCRIBER_IMAGE)" in c["args"]
    expected = {"localhost/inference-cache/%s:%s" % (n, version)
                for n in ("server", "controller", "kvevent-subscriber")}
    assert images == expected
    assert {"server", "controller", "kvevent-subscriber"} <= set(progs)


@pytest.mark.skipif(not os.path.exists("/usr/bin/kubectl"), reason="kubectl not installed")
def test_kustomization_images_entry_moves_the_injected_subscriber_image_too(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [%s]\nimages:\n"
        "  - name: localhost/inference-cache/kvevent-subscriber\n"
        "    newName: registry.example.com/ic/kvevent-subscriber\n    newTag: v9\n"
        % os.path.relpath(os.path.join(SOURCE_DIR, "config", "default"), str(tmp_path)))
    p = subprocess.run(["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "value: registry.example.com/ic/kvevent-subscriber:v9" in p.stdout
    assert "localhost/inference-cache/kvevent-subscriber" not in p.stdout
