#!/bin/sh
# Runs the go command for this client against Debian's Go packages, offline:
#
#   clients/go/go.sh build -o bin/order-flow tessera/clients/go/cmd/order-flow
#   clients/go/go.sh test tessera/clients/go/...
#
# GOPATH mode (as Debian builds Go packages): the dependencies are the sources Debian
# installs under /usr/share/gocode (golang-google-grpc-dev, golang-google-protobuf-dev,
# golang-github-golang-protobuf-1-5-dev, golang-google-genproto-dev), and this
# directory is the package tessera/clients/go through a symlink in .gopath/ (at the
# repository's root, git-ignored). Nothing is fetched: GOPROXY=off, no modules.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gopath="$root/.gopath"
link="$gopath/src/tessera/clients/go"
if [ ! -e "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn ../../../../clients/go "$link"
fi
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
  GOCACHE="${GOCACHE:-$gopath/cache}" exec go "$@"
