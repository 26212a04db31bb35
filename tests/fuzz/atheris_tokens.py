"""Coverage-guided fuzzing (atheris, libFuzzer) of the token parser and verifier, the
canonical encoding and the OMS call credential: the targets of :mod:`token_targets`,
with the pure-Python twin and the credential check instrumented for coverage (the
compiled core is checked against the twin on every input).

``make fuzz`` runs it::

    python tests/fuzz/atheris_tokens.py -runs=200000 -seed=1 [corpus_dir]

and records the number of inputs tried in ``TESSERA_FUZZ_SUMMARY`` (when set). A failing
property aborts with the input that broke it (libFuzzer writes it as ``crash-*``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parents[1])):
    if path not in sys.path:
        sys.path.insert(0, path)

import atheris

with atheris.instrument_imports(include=["core_ext", "services.common.tokens", "token_targets"]):
    import token_targets as targets

    import core_ext._token_py
    import core_ext.token_format  # noqa: F401
    from services.common.tokens import oms_call_metadata


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 5)
    if target == 5:
        requests = targets.wire_requests()[0]
        request = bytearray(requests[fdp.ConsumeIntInRange(0, len(requests) - 1)])
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            request[fdp.ConsumeIntInRange(0, len(request) - 1)] = fdp.ConsumeIntInRange(0, 255)
        targets.check_wire_request(bytes(request))
    elif target == 0:
        targets.check_token(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400)))
    elif target == 1:
        valid = targets.valid_tokens()[fdp.ConsumeIntInRange(0, 1)]
        edits = [(fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 400), fdp.ConsumeUnicodeNoSurrogates(3))
                 for _ in range(fdp.ConsumeIntInRange(1, 4))]
        mutated = targets.mutate(valid, edits)
        reason = targets.check_token(mutated)
        assert (reason == "OK") == (mutated in targets.valid_tokens())
    elif target == 2:
        targets.check_decimal(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60)))
    elif target == 3:
        fields = dict(targets.FIELDS)
        for name in list(fields)[: fdp.ConsumeIntInRange(0, len(fields))]:
            kind = fdp.ConsumeIntInRange(0, 3)
            fields[name] = (None, fdp.ConsumeUnicodeNoSurrogates(12), fdp.ConsumeBool(),
                            fdp.ConsumeInt(4))[kind]
        targets.check_order_body(fields)
    else:
        method = ("ExecuteOrder", "CancelOrder", "QueryOrder")[fdp.ConsumeIntInRange(0, 2)]
        genuine = oms_call_metadata(targets.RING, method)[0][1]
        metadata = []
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            key = "tessera-oms-credential" if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(20)
            choice = fdp.ConsumeIntInRange(0, 2)
            value = (genuine, fdp.ConsumeUnicodeNoSurrogates(120),
                     targets.mutate(genuine, [(fdp.ConsumeIntInRange(0, 5), fdp.ConsumeIntInRange(0, 200),
                                               fdp.ConsumeUnicodeNoSurrogates(2))]))[choice]
            metadata.append((key, value))
        targets.check_call_credential(metadata, method, {genuine})


def main() -> None:
    targets.fixtures()  # sign the fixtures before fuzzing starts
    targets.wire_requests()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
