"""The way out of CDKTF: every stack converts to plain Terraform HCL that `terraform validate`s with
neither errors nor warnings (the no-change plan against deployed state is in test_infra_local)."""

from __future__ import annotations

import pytest

from conftest import PATHS
from toolkit.terraform.adapter import Workspace
from toolkit.terraform.hcl import export_hcl, unquote_references


@pytest.fixture(scope="module")
def hcl_stacks(tmp_path_factory):
    return export_hcl(PATHS, tmp_path_factory.mktemp("hcl"))


def test_every_stack_converts_to_hcl_that_validates_without_warnings(hcl_stacks):
    assert sorted(hcl_stacks) == ["platform-dev", "platform-local", "platform-prod", "platform-staging"]
    for directory in hcl_stacks.values():
        workspace = Workspace(directory, PATHS)
        workspace.init(backend=False)
        assert workspace.validate(warnings_fail=True) == []


def test_no_attribute_is_a_json_string_with_references(synthesized):
    """What `cdktf synth --hcl` mangles into invalid HCL: a JSON document built as a string around
    `${...}` references (build it with Fn.jsonencode or a policy document data source)."""
    def strings(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from strings(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from strings(value, f"{path}[{i}]")
        elif isinstance(node, str):
            yield path, node

    for env, synth in synthesized.items():
        bad = [path for path, value in strings(synth.get("resource", {}))
               if value.lstrip().startswith(("{", "[")) and "${" in value]
        assert bad == [], (env, bad)


def test_references_are_unquoted_only_where_terraform_wants_references():
    hcl = ('  depends_on = [\n    "aws_iam_role.x_1-A",\n  ]\n  lifecycle {\n    ignore_changes = [\n'
           '      "scaling_config[0].desired_size",\n    ]\n  }\n  tags = ["not.a_reference"]\n  name = "aws_iam_role.x"\n')
    assert unquote_references(hcl) == (
        '  depends_on = [\n    aws_iam_role.x_1-A,\n  ]\n  lifecycle {\n    ignore_changes = [\n'
        '      scaling_config[0].desired_size,\n    ]\n  }\n  tags = ["not.a_reference"]\n  name = "aws_iam_role.x"\n')


def test_heredoc_values_keep_their_exact_text():
    """cdktf writes a multi-line string as a heredoc, which adds a newline to the value; the JSON stack's
    string (e.g. the AMP rule file) has none more, so every plan from the HCL would change it."""
    from toolkit.terraform.hcl import exact_heredocs

    hcl = '  data = <<EOF\ngroups:\n- name: x\nEOF\n  name = "y"\n'
    assert exact_heredocs(hcl) == '  data = trimsuffix(<<EOF\ngroups:\n- name: x\nEOF\n, "\\n")\n  name = "y"\n'
