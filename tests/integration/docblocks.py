"""The fenced code blocks of README.md and docs/*.md, and a runner for the
runnable ones (test_docs_blocks.py).

The convention (checked by test_docs_blocks.py):

  ```sh        commands a reader runs as written, in order, from the top of a
               clean checkout after `make`: the test runs every sh block of a
               document in one bash session (set -e -o pipefail), so files,
               variables and `&` background jobs carry over from one block to
               the next. A command whose last line ends in a comment starting
               with `# refused` or `# fails` must exit non-zero (and must
               have run: not 126/127, and for curl not "could not resolve or
               connect"); every other command must exit 0.
  ```console   commands shown but not run by the test (they need root, other
               hosts, minutes, or are a fragment run elsewhere); each one is
               listed in test_docs_blocks.NOT_RUN with the reason.
  ```yaml ```json ```python ```text
               samples: files, log lines, output, synopses, diagrams. Never run.

Every block carries one of these tags; an untagged block (or another tag, say
`bash`, which would escape the test) fails the inventory test.
"""
import os
import re
from dataclasses import dataclass

RUN = "sh"
NOT_RUN = "console"
SAMPLES = ("yaml", "json", "python", "text")
TAGS = (RUN, NOT_RUN) + SAMPLES

# The trailing comment that says a command is expected to fail.
REFUSED_MARK = re.compile(r"#\s*(refused|fails)\b")

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


@dataclass
class Block:
    doc: str        # "README.md", "docs/http.md"
    line: int       # line of the opening fence (1-based)
    info: str       # the info string ("sh", "yaml", "")
    body: str       # the text between the fences, ending in a newline

    @property
    def lang(self):
        return self.info.split()[0] if self.info.strip() else ""

    @property
    def first_line(self):
        for ln in self.body.splitlines():
            if ln.strip():
                return ln.strip()
        return ""

    @property
    def where(self):
        return "%s:%d" % (self.doc, self.line)


def blocks(root, doc):
    """Every fenced code block of root/doc, in order (CommonMark fences:
    ``` or ~~~, indented at most 3 spaces; the closing fence uses the same
    character, at least as long, with nothing after it)."""
    lines = open(os.path.join(root, doc), encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m.group(2)[0] == "`" and "`" in m.group(3)):
            i += 1
            continue
        fence, info, start = m.group(2), m.group(3).strip(), i
        body = []
        i += 1
        while i < len(lines):
            c = _FENCE.match(lines[i])
            if c and c.group(2)[0] == fence[0] and len(c.group(2)) >= len(fence) \
                    and not c.group(3).strip():
                break
            body.append(lines[i])
            i += 1
        else:
            raise ValueError("%s:%d: code block never closed" % (doc, start + 1))
        out.append(Block(doc, start + 1, info, "".join(b + "\n" for b in body)))
        i += 1
    return out


# --------------------------------------------------------------------------
# splitting a block into commands
# --------------------------------------------------------------------------

@dataclass
class Command:
    first: int      # index of its first line in the block body
    last: int       # index of its last line
    comment: str    # the comment on its last line (outside quotes), or ""


_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def split_commands(body, where="?"):
    """Groups a shell block's lines into top-level commands: a command goes on
    over a trailing backslash, an open quote, a here-document, an open
    $( or (, and a trailing |, && or ||. Blank and comment-only lines
    belong to no command. Raises ValueError on a block that ends inside a
    command (an unclosed quote, a missing here-document delimiter)."""
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cmds = []
    quote = None        # None, "'" or '"'
    depth = 0           # open ( and $(
    heredocs = []       # delimiters whose bodies are still to come
    in_heredoc = None   # the delimiter of the body being read
    continues = False   # the line before the here-document body goes on
    last_comment = ""   # the comment of that line
    start = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if in_heredoc is not None:
            if line.strip() == in_heredoc[0] if in_heredoc[1] else line == in_heredoc[0]:
                in_heredoc = heredocs.pop(0) if heredocs else None
                if in_heredoc is None and quote is None and depth == 0 and not continues:
                    cmds.append(Command(start, i, last_comment))
                    start = None
            i += 1
            continue
        if start is None:
            s = line.strip()
            if not s or s.startswith("#"):
                i += 1
                continue
            start = i
        comment = ""
        j = 0
        prev = " "
        code_end = len(line)
        while j < len(line):
            ch = line[j]
            if quote == "'":
                if ch == "'":
                    quote = None
            elif quote == '"':
                if ch == "\\":
                    j += 1
                elif ch == '"':
                    quote = None
            else:
                if ch == "\\":
                    j += 1
                elif ch in "'\"":
                    quote = ch
                elif ch == "#" and (prev.isspace() or prev in ";&|("):
                    comment = line[j:]
                    code_end = j
                    break
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth = max(0, depth - 1)
                elif line.startswith("<<", j) and not line.startswith("<<<", j):
                    m = _HEREDOC.match(line, j)
                    if m:
                        heredocs.append((m.group(3), m.group(1) == "-"))
                        j = m.end()
                        prev = "x"
                        continue
            prev = ch
            j += 1
        code = line[:code_end].rstrip()
        continues = quote is not None or depth > 0 or (
            quote is None and (code.endswith("\\") and not code.endswith("\\\\")
                               or code.endswith("|") or code.endswith("&&")))
        last_comment = comment
        if heredocs:
            in_heredoc = heredocs.pop(0)
            i += 1
            continue
        if not continues:
            cmds.append(Command(start, i, comment))
            start = None
        i += 1
    if in_heredoc is not None or heredocs:
        raise ValueError("%s: here-document not closed" % where)
    if start is not None:
        raise ValueError("%s: the block ends inside a command (open quote, "
                         "parenthesis or continuation)" % where)
    return cmds


# --------------------------------------------------------------------------
# one document's sh blocks as one bash script
# --------------------------------------------------------------------------

PRELUDE = r"""set -e -o pipefail
__sd_loc=start
trap 'echo "__SD_FAILED status=$? at $__sd_loc" >&2' ERR
__sd_refused() {  # status, where, program
    case "$1" in
    126|127) echo "__SD_NOT_RUN status=$1 at $2 (command not found or not executable)" >&2
             exit 96 ;;
    esac
    if [ "$3" = curl ]; then
        case "$1" in
        6|7|28) echo "__SD_NOT_RUN status=$1 at $2 (curl could not resolve, connect or" \
                     "timed out: nothing refused it)" >&2
                exit 96 ;;
        esac
    fi
    echo "__SD_REFUSED status=$1 at $2"
}
"""

# Lines that continue a compound command: no location assignment before them.
_COMPOUND = re.compile(r"^\s*(then|do|else|elif|fi|done|esac|;;|\}|\))\b")


def script(blocks_, port_map=None):
    """The bash script that runs these sh blocks in order: each command is
    preceded by an assignment naming its doc:line (for the ERR trap); a
    command marked `# refused` / `# fails` is wrapped so that it must fail.
    port_map: {"8443": "40123", ...}, applied to whole words of the text.
    Returns (script, number of commands marked refused)."""
    out = [PRELUDE]
    refused = 0
    for b in blocks_:
        body = b.body
        if port_map:
            for old, new in port_map.items():
                body = re.sub(r"\b%s\b" % re.escape(old), new, body)
        lines = body.split("\n")
        out.append("# ---- %s\n" % b.where)
        cur = 0
        for c in split_commands(body, b.where):
            out.extend(ln + "\n" for ln in lines[cur:c.first])
            where = "%s:%d" % (b.doc, b.line + 1 + c.first)
            text = "".join(ln + "\n" for ln in lines[c.first:c.last + 1])
            if not _COMPOUND.match(lines[c.first]):
                # `jobs` as an interactive shell does before each prompt:
                # finished jobs are reported and forgotten, so that %1 is
                # the first job still running, as for a reader typing the
                # commands (a script keeps a job that exited before `wait`
                # as "Done", and the next job would be %3, not %1).
                out.append("__sd_loc='%s'; jobs >/dev/null\n" % where)
            if REFUSED_MARK.search(c.comment):
                refused += 1
                prog = os.path.basename(text.split()[0])
                out.append("if {\n%s}; then echo \"__SD_NOT_REFUSED at %s: exit status 0\" >&2;"
                           " exit 97; else __sd_refused $? '%s' '%s'; fi\n"
                           % (text, where, where, prog))
            else:
                out.append(text)
            cur = c.last + 1
        out.extend(ln + "\n" for ln in lines[cur:] if ln)
    out.append("__sd_loc=end\necho __SD_DONE\n")
    return "".join(out), refused


_PORT = re.compile(r"(?:\b127\.0\.0\.1|\blocalhost|\b0\.0\.0\.0|\[::1?\])"
                   r":([0-9]{2,5})\b")


def ports(blocks_):
    """The TCP ports the blocks name as HOST:PORT (sorted, as strings)."""
    return sorted({m.group(1) for b in blocks_ for m in _PORT.finditer(b.body)}, key=int)
