"""dllab.seq2seq's public face: every declared name resolves, and the vocabulary loads without torch."""

import subprocess
import sys

import dllab.seq2seq


def test_every_declared_name_resolves():
    assert dllab.seq2seq.__all__ == sorted(dllab.seq2seq.__all__)
    for name in dllab.seq2seq.__all__:
        assert getattr(dllab.seq2seq, name) is not None
    from dllab.seq2seq.decoding import decode

    assert dllab.seq2seq.decode is decode


def test_the_vocabulary_loads_without_torch():
    code = "import sys; from dllab.seq2seq import Vocab, PAD; Vocab.build(['ab']); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
