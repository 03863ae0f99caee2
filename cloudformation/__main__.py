"""``python -m cloudformation [--out DIR] [--format json|yaml]``: write the stack's template and stack policy.

Layer: deployment entry point. The only module here that does I/O: it builds the template with
``build_template`` and writes ``DIR/filesync.<format>`` (default ``out/cloudformation``), and the stack
policy that protects the data resources, ``DIR/stack-policy.json`` (docs/operations.md, "Deploy", applies both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from cloudformation.policies import stack_policy
from cloudformation.template import PROTECTED_RESOURCES, TemplateParams, build_template

#: The stack's template file name, without its extension.
TEMPLATE_NAME = "filesync"
#: The stack policy's file name.
STACK_POLICY_NAME = "stack-policy.json"


def render(fmt: str, params: TemplateParams | None = None) -> str:
    """The template as text: JSON (indented, keys in troposphere's order) or YAML, newline-terminated."""
    template = build_template(params or TemplateParams())
    text: str = template.to_yaml() if fmt == "yaml" else template.to_json(indent=2)
    return text if text.endswith("\n") else text + "\n"


def render_stack_policy() -> str:
    return orjson.dumps(stack_policy(PROTECTED_RESOURCES), option=orjson.OPT_INDENT_2).decode() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudformation", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/cloudformation"), help="directory to write to")
    parser.add_argument("--format", choices=("json", "yaml"), default="json", help="template format")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{TEMPLATE_NAME}.{args.format}"
    path.write_text(render(args.format), encoding="utf-8")
    policy = args.out / STACK_POLICY_NAME
    policy.write_text(render_stack_policy(), encoding="utf-8")
    sys.stdout.write(f"{path}\n{policy}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
