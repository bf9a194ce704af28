#!/usr/bin/env bash
# Builds the sluice container image without Docker, the same image the Dockerfile describes:
# a static release binary, a CA bundle and /etc/passwd in one layer, written as an OCI image
# layout, then checked with skopeo and umoci and started with runc as UID 65532 on a read-only
# root, answering /healthz.
#
#   deploy/image/build.sh [--skip-build] [--no-run] [--archive]
#
#   --skip-build  reuse the release binary already built
#   --no-run      do not start the image with runc (needs root and cgroups)
#   --archive     also write a docker-archive (target/image/sluice.tar) for
#                 `kind load image-archive` and `docker load`
#
# Environment: TAG (default: the version in actors/Cargo.toml), OUT (default target/image),
# CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), SOURCE_DATE_EPOCH (default: the last
# commit's time; makes the image reproducible), CARGO_TARGET_DIR.
# Needs: cargo, jq, tar, gzip, sha256sum, readelf; skopeo, umoci and runc (Debian packages of
# the same names) for the checks.
set -euo pipefail

skip_build=0
run_check=1
archive=0
for arg in "$@"; do
    case "$arg" in
        --skip-build) skip_build=1 ;;
        --no-run) run_check=0 ;;
        --archive) archive=1 ;;
        -h | --help)
            sed -n '2,20p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target_triple="x86_64-unknown-linux-gnu"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${OUT:-$root/target/image}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' actors/Cargo.toml | head -n 1)"
tag="${TAG:-$version}"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"

step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

for tool in jq tar gzip sha256sum readelf; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
[ -r "$ca_bundle" ] || die "no CA bundle at $ca_bundle (install ca-certificates or set CA_BUNDLE)"

# 1. The static binary.
binary="$target_dir/$target_triple/release/sluice"
if [ "$skip_build" = 0 ]; then
    step "cargo build --release (static, $target_triple)"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target_triple" -p sluice-actors --bin sluice
fi
[ -x "$binary" ] || die "no binary at $binary (build it, or drop --skip-build)"
if readelf -l "$binary" | grep -q INTERP; then
    die "$binary is dynamically linked (RUSTFLAGS must carry -C target-feature=+crt-static)"
fi

# 2. The root filesystem of the single layer: owned by root, fixed times.
step "root filesystem"
rm -rf "$out"
rootfs="$out/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/sluice"
install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

# 3. The OCI image layout.
step "OCI image layout in $out/oci ($tag)"
layout="$out/oci"
blobs="$layout/blobs/sha256"
mkdir -p "$blobs"

# Writes stdin as a blob; prints "sha256:<hex> <size>".
put_blob() {
    local tmp digest size
    tmp="$(mktemp "$blobs/.tmp.XXXXXX")"
    cat >"$tmp"
    digest="$(sha256sum "$tmp" | cut -d' ' -f1)"
    size="$(stat -c %s "$tmp")"
    mv "$tmp" "$blobs/$digest"
    printf 'sha256:%s %s\n' "$digest" "$size"
}

layer_tar="$out/layer.tar"
tar --create --file "$layer_tar" --directory "$rootfs" --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$epoch" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime .
diff_id="sha256:$(sha256sum "$layer_tar" | cut -d' ' -f1)"
read -r layer_digest layer_size < <(gzip -9 -n <"$layer_tar" | put_blob)
rm -f "$layer_tar"

config="$(jq -cn \
    --arg created "$created" --arg diff_id "$diff_id" --arg version "$version" \
    '{
      created: $created,
      architecture: "amd64",
      os: "linux",
      config: {
        User: "65532:65532",
        ExposedPorts: {"8080/tcp": {}, "8443/tcp": {}, "9100/tcp": {}},
        Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
        Entrypoint: ["/usr/local/bin/sluice"],
        Cmd: ["run", "--kube"],
        WorkingDir: "/",
        Labels: {
          "org.opencontainers.image.title": "sluice",
          "org.opencontainers.image.version": $version,
          "org.opencontainers.image.licenses": "Apache-2.0"
        }
      },
      rootfs: {type: "layers", diff_ids: [$diff_id]},
      history: [{created: $created, created_by: "deploy/image/build.sh"}]
    }')"
read -r config_digest config_size < <(printf '%s' "$config" | put_blob)

manifest="$(jq -cn \
    --arg cd "$config_digest" --argjson cs "$config_size" \
    --arg ld "$layer_digest" --argjson ls "$layer_size" \
    '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
    }')"
read -r manifest_digest manifest_size < <(printf '%s' "$manifest" | put_blob)

jq -n --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg tag "$tag" \
    '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: $md, size: $ms,
        platform: {architecture: "amd64", os: "linux"},
        annotations: {"org.opencontainers.image.ref.name": $tag}
      }]
    }' >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
rm -rf "$rootfs"
echo "image: oci:$layout:$tag (manifest $manifest_digest)"

# 4. Checks: skopeo reads it, umoci unpacks it, runc runs it.
if command -v skopeo >/dev/null; then
    step "skopeo inspect"
    inspect="$(skopeo inspect "oci:$layout:$tag")"
    [ "$(jq -r .Digest <<<"$inspect")" = "$manifest_digest" ] || die "skopeo sees another digest"
    skopeo inspect --config "oci:$layout:$tag" |
        jq -e '.config.User == "65532:65532" and (.config.ExposedPorts | has("8080/tcp") and has("8443/tcp"))' >/dev/null ||
        die "unexpected image configuration"
    if [ "$archive" = 1 ]; then
        step "docker-archive $out/sluice.tar (kind load image-archive)"
        skopeo copy --quiet "oci:$layout:$tag" "docker-archive:$out/sluice.tar:sluice:$tag"
    fi
else
    echo "skopeo not found: skipping the skopeo check" >&2
fi

if [ "$run_check" = 0 ]; then
    exit 0
fi
command -v umoci >/dev/null || die "umoci is needed to run the image (or pass --no-run)"
command -v runc >/dev/null || die "runc is needed to run the image (or pass --no-run)"
[ "$(id -u)" = 0 ] || die "runc needs root here (or pass --no-run)"

step "umoci unpack"
bundle="$out/bundle"
umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
[ -x "$bundle/rootfs/usr/local/bin/sluice" ] || die "the unpacked image has no sluice"
[ -s "$bundle/rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "the unpacked image has no CA bundle"

step "runc run (UID 65532, read-only root, no capabilities, host network)"
port="${CHECK_PORT:-19090}"
manifests="$out/manifests"
mkdir -p "$manifests"
# A standalone instance on loopback (the host's network namespace, so that this script reaches
# it); the manifests folder is mounted read-only.
jq --arg port "$port" --arg manifests "$manifests" '
  .process.args = ["/usr/local/bin/sluice", "run", "--manifests", "/manifests",
                   "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0",
                   "--admin-addr", ("127.0.0.1:" + $port)]
  | .process.terminal = false
  | .process.user.uid = 65532 | .process.user.gid = 65532
  | .process.noNewPrivileges = true
  | .process.capabilities = {bounding: [], effective: [], inheritable: [], permitted: [], ambient: []}
  | .root.readonly = true
  | .linux.namespaces |= map(select(.type != "network"))
  | .mounts += [{destination: "/manifests", type: "bind", source: $manifests,
                 options: ["rbind", "ro"]}]
' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

id="sluice-image-check-$$"
cleanup() {
    runc kill "$id" KILL 2>/dev/null || true
    runc delete --force "$id" 2>/dev/null || true
}
trap cleanup EXIT
runc run --detach --bundle "$bundle" --pid-file "$out/pid" "$id" >"$out/runc.log" 2>&1 ||
    die "runc run failed: $(cat "$out/runc.log")"
pid="$(cat "$out/pid")"

healthy=0
for _ in $(seq 1 100); do
    if [ "$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null)" = "ok" ]; then
        healthy=1
        break
    fi
    sleep 0.1
done
[ "$healthy" = 1 ] || die "no /healthz answer on 127.0.0.1:$port: $(cat "$out/runc.log")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
[ "$uid" = 65532 ] || die "the process runs as UID $uid, not 65532"
caps="$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")"
[ "$caps" = 0000000000000000 ] || die "the process has capabilities $caps"
root_opts="$(awk '$2 == "/" {print $4}' "/proc/$pid/mounts" | tail -n 1)"
case ",$root_opts," in
    *,ro,*) ;;
    *) die "the root filesystem is mounted $root_opts, not read-only" ;;
esac
echo "runc: /healthz ok, UID $uid, no capabilities, root $root_opts"
runc kill "$id" TERM
for _ in $(seq 1 100); do
    [ "$(runc state "$id" 2>/dev/null | jq -r .status)" = "stopped" ] && break
    sleep 0.1
done
trap - EXIT
cleanup
rm -rf "$bundle" "$manifests" "$out/pid"
echo "done: oci:$layout:$tag"
