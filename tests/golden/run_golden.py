#!/usr/bin/env python3
"""Golden tests for `heed check` (and `heed compile` with an --emit in the
args block: schedules): each .heed or .ir file embeds its expectations.

    // >>> args
    // --set layers=2 --model Tiny
    // <<<
    // >>> error
    // bad_dim.heed:3:10: error: unknown name 'dimm'; did you mean 'dim'?
    // bad_dim.heed:2:3: note: ...
    // <<<
    // >>> stdout
    // ...exact standard output of heed check (e.g. with --params)...
    // <<<

Blocks go at the end of the file, so that rewriting them never moves the
lines they talk about. The `error` block lists every `error:`/`note:` line heed prints (file paths
reduced to the base name), in order; a file with one exits with status 1,
a file without one must check clean (status 0). Source and caret lines
are checked for shape (a caret line follows every located line) but not
compared. HEED_UPDATE_GOLDEN=1 rewrites the blocks from heed's output.
Usage: run_golden.py [--all-ok] HEED DIR_OR_FILES...
"""
import os
import re
import subprocess
import sys

LOC_LINE = re.compile(r'^(?P<path>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): (?P<kind>error|note): ')
PLAIN_LINE = re.compile(r'^heed: (error|note): ')


def blocks(text, cm='//'):
    out, cur, name = {}, None, None
    for line in text.splitlines():
        m = re.match(r'^' + re.escape(cm) + r' >>> (\w+)\s*$', line)
        if m:
            name, cur = m.group(1), []
            continue
        if line.strip() == cm + ' <<<' and name:
            out[name] = cur
            name = cur = None
            continue
        if cur is not None:
            cur.append(line[len(cm) + 1:] if line.startswith(cm + ' ') else line[len(cm):] if line.startswith(cm) else line)
    return out


def diag_lines(stderr):
    got, lines = [], stderr.splitlines()
    for i, line in enumerate(lines):
        m = LOC_LINE.match(line)
        if m:
            line = os.path.basename(m.group('path')) + line[len(m.group('path')):]
            if i + 2 >= len(lines) or '^' not in lines[i + 2]:
                got.append('!! no caret line after: ' + line)
            got.append(line)
        elif PLAIN_LINE.match(line):
            got.append(line)
    return got


def rewrite(path, text, updates, cm='//'):
    for name, lines in updates.items():
        body = ''.join(cm + ' ' + l + '\n' for l in lines)
        pat = re.compile(re.escape(cm) + r' >>> ' + name + r'\n.*?' + re.escape(cm) + r' <<<\n', re.S)
        new = cm + ' >>> ' + name + '\n' + body + cm + ' <<<\n'
        if pat.search(text):
            text = pat.sub(lambda _: new, text, count=1)
        else:
            text = text.rstrip('\n') + '\n' + new
    with open(path, 'w') as f:
        f.write(text)


def run_one(heed, path, all_ok):
    with open(path, encoding='utf-8', errors='replace') as f:
        text = f.read()
    ir = path.endswith('.ir')  # IR text: comments are ';', the command re-prints it
    cm = ';' if ir else '//'
    b = blocks(text, cm)
    args = ' '.join(b.get('args', [])).split()
    # run beside the file, so that every path heed prints is the base name
    name = os.path.basename(path)
    # an .ir file is re-printed (--emit ir) unless its args name another --emit; a .heed
    # file is checked, or compiled when its args name an --emit (e.g. schedule)
    if ir:
        cmd = [heed, 'compile', name] + ([] if '--emit' in args else ['--emit', 'ir']) + args
    else:
        cmd = [heed, 'compile' if '--emit' in args else 'check', name] + args
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors='replace', timeout=30,
                           cwd=os.path.dirname(os.path.abspath(path)))
    except subprocess.TimeoutExpired:
        return ['timeout (30 s): ' + ' '.join(cmd)]
    got = diag_lines(p.stderr)
    problems = []
    if p.returncode not in (0, 1, 2):
        problems.append('exit status %d (crash?)\n%s' % (p.returncode, p.stderr[-2000:]))
    want = b.get('error')
    if os.environ.get('HEED_UPDATE_GOLDEN') and not all_ok:
        upd = {}
        if got or 'error' in b:
            upd['error'] = got
        if 'stdout' in b:
            upd['stdout'] = p.stdout.rstrip('\n').splitlines()
        rewrite(path, text, upd, cm)
        return problems
    if all_ok or want is None:
        if p.returncode != 0:
            problems.append('expected a clean check, got status %d:\n%s' % (p.returncode, p.stderr))
    else:
        if p.returncode != 1:
            problems.append('expected exit status 1, got %d' % p.returncode)
        if got != want:
            problems.append('diagnostics differ:\n  want:\n' + ''.join('    ' + l + '\n' for l in want) +
                            '  got:\n' + ''.join('    ' + l + '\n' for l in got) + '  full stderr:\n' + p.stderr)
    if 'stdout' in b and p.stdout.rstrip('\n').splitlines() != b['stdout']:
        problems.append('stdout differs:\n  want:\n' + '\n'.join(b['stdout']) + '\n  got:\n' + p.stdout)
    return problems


def main():
    argv = sys.argv[1:]
    all_ok = '--all-ok' in argv
    argv = [a for a in argv if a != '--all-ok']
    heed, targets = os.path.abspath(argv[0]), argv[1:]
    files = []
    for t in targets:
        if os.path.isdir(t):
            files += sorted(os.path.join(t, f) for f in os.listdir(t) if f.endswith(('.heed', '.ir')))
        else:
            files.append(t)
    if not files:
        print('no .heed files found in', targets)
        return 1
    failed = 0
    for path in files:
        problems = run_one(heed, path, all_ok)
        if problems:
            failed += 1
            print('FAIL', path)
            for pr in problems:
                print('  ' + pr.replace('\n', '\n  '))
    print('%d passed, %d failed' % (len(files) - failed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
