"""`objstore completion bash|zsh|fish`: a shell completion script for objstore's commands.

    eval "$(objstore completion bash)"            # in ~/.bashrc
    eval "$(objstore completion zsh)"             # in ~/.zshrc
    objstore completion fish > ~/.config/fish/completions/objstore.fish

The script is generated from the command line parser itself, so it completes exactly the
commands (and their subcommands and options) this objstore has.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(func=cmd_completion)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--") or len(o) == 2)


def tree() -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """command -> (its options, {subcommand: its options}); "" holds the global options."""
    from objstore.cli import build_parser

    parser = build_parser()
    out: dict[str, tuple[list[str], dict[str, list[str]]]] = {"": (_options(parser), {})}
    for name, command in _subparsers(parser).items():
        out[name] = (_options(command), {n: _options(p) for n, p in _subparsers(command).items()})
    return out


def bash(t: dict) -> str:
    cases = []
    for name, (options, subs) in t.items():
        if not name:
            continue
        if subs:
            inner = "".join(f'                {s}) words="{" ".join(o)}" ;;\n' for s, o in subs.items())
            cases.append(f'        {name})\n            if [ "$COMP_CWORD" -eq 2 ]; then words="{" ".join(subs)}"; else\n'
                         f'            case "${{COMP_WORDS[2]}}" in\n{inner}            esac; fi ;;')  # fmt: skip
        else:
            cases.append(f'        {name}) words="{" ".join(options)}" ;;')
    commands = " ".join(n for n in t if n)
    return f"""# bash completion for objstore (objstore completion bash)
_objstore() {{
    local cur words
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        words="{commands} {' '.join(t[''][0])}"
    else
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
        *) words="" ;;
    esac
    fi
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
    [ ${{#COMPREPLY[@]}} -eq 0 ] && COMPREPLY=( $(compgen -f -- "$cur") )
    return 0
}}
complete -F _objstore objstore
"""


def zsh(t: dict) -> str:
    return "# zsh completion for objstore (objstore completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n" + bash(t)


def fish(t: dict) -> str:
    lines = ["# fish completion for objstore (objstore completion fish)", "complete -c objstore -f"]
    commands = [n for n in t if n]
    lines.append(f"complete -c objstore -n '__fish_use_subcommand' -a '{' '.join(commands)}'")
    for name, (options, subs) in t.items():
        if not name:
            continue
        if subs:
            lines.append(f"complete -c objstore -n '__fish_seen_subcommand_from {name}' -a '{' '.join(subs)}'")
        for option in options:
            if option.startswith("--"):
                lines.append(f"complete -c objstore -n '__fish_seen_subcommand_from {name}' -l {option[2:]}")
    return "\n".join(lines) + "\n"


def cmd_completion(args, ctx) -> int:
    t = tree()
    ctx.stdout.write({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](t))
    return 0


__all__ = ["register", "cmd_completion", "tree"]
