#!/usr/bin/env bash
# Fetches the GraphiQL page's third-party files again, at exactly the pinned versions, from the
# npm registry into graphql_api/static/graphiql/vendor/ (see the README there). To upgrade, change
# a version, run this, and copy the integrity it reports for the new tarball into the script.
set -euo pipefail
cd "$(dirname "$0")/.."

# name version integrity (the registry's sha512 of the tarball, as `npm pack --json` reports it)
PACKAGES=(
    "graphiql 3.9.0 sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA=="
    "react 18.3.1 sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ=="
    "react-dom 18.3.1 sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw=="
)
# name: the files of that package to serve (besides its LICENSE)
declare -A FILES=(
    [graphiql]="graphiql.min.js graphiql.min.css"
    [react]="umd/react.production.min.js"
    [react-dom]="umd/react-dom.production.min.js"
)
DEST=graphql_api/static/graphiql/vendor

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Every tarball is checked before any file is replaced, so a mismatch changes nothing.
for entry in "${PACKAGES[@]}"; do
    read -r name version integrity <<<"$entry"
    packed=$(cd "$tmp" && npm pack --json --loglevel=error "$name@$version")
    got=$(printf '%s' "$packed" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].integrity))')
    if [ "$got" != "$integrity" ]; then
        echo "vendor-graphiql: $name@$version has integrity $got, not the pinned $integrity" >&2
        exit 1
    fi
done
for entry in "${PACKAGES[@]}"; do
    read -r name version _ <<<"$entry"
    mkdir -p "$tmp/$name"
    tar -xzf "$tmp/$name-$version.tgz" -C "$tmp/$name" --strip-components=1
    rm -rf "${DEST:?}/$name"
    mkdir -p "$DEST/$name"
    cp "$tmp/$name/LICENSE" "$DEST/$name/LICENSE"
    for file in ${FILES[$name]}; do
        cp "$tmp/$name/$file" "$DEST/$name/"
    done
    echo "$name@$version -> $DEST/$name"
done
