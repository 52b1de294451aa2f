"""RTP analysis is on by default (as upstream); --no_rtp_analysis and
--kernel_offload (without an explicit --rtp_analysis) turn it off."""

import pytest

from rtpproxy_py import cli
from rtpproxy_py.config import ConfigError


@pytest.mark.parametrize("args, analysis", [
    ([], True),
    (["--rtp_analysis"], True),                      # accepted: scripts pass it
    (["--no_rtp_analysis"], False),
    (["--kernel_offload"], False),                   # the operator chose the kernel path
    (["--kernel_offload", "--rtp_analysis"], True),
    (["--kernel_offload", "--no_rtp_analysis"], False),
])
def test_analysis_default_and_opt_outs(args, analysis):
    assert cli.config_from_argv(args + ["-p", "/dev/null"]).rtp_analysis is analysis


def test_both_analysis_flags_are_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="contradict"):
        cli.config_from_argv(["--rtp_analysis", "--no_rtp_analysis"])
