//! What a `.pth` pickle may name. A pickle is a program: its `GLOBAL` opcodes import any
//! Python callable and `REDUCE` calls it, which is how a malicious checkpoint runs
//! `os.system`. retrain's reader never runs anything, but a file that names more than a
//! weights file needs is refused outright, with the name, as PyTorch's
//! `torch.load(weights_only=True)` does: before any of it is interpreted.

use std::io::Read;

/// Why a pickle is refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// It names a global outside the allow-list.
    Global(String),
    /// Not a pickle stream this reader understands.
    Malformed(String),
}

/// The globals a weights file needs: tensor rebuilding, storage and dtype names, and the
/// containers a state dict is made of.
fn allowed(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "builtins" | "__builtin__" => matches!(name, "set" | "frozenset"),
        // Protocol 2 spells `bytes` values as `_codecs.encode(str, 'latin1')`.
        "_codecs" => name == "encode",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_tensor_v3"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            name.ends_with("Storage")
                || matches!(
                    name,
                    "float32"
                        | "float"
                        | "float64"
                        | "double"
                        | "float16"
                        | "half"
                        | "bfloat16"
                        | "int64"
                        | "long"
                        | "int32"
                        | "int"
                        | "int16"
                        | "short"
                        | "int8"
                        | "uint8"
                        | "uint16"
                        | "uint32"
                        | "uint64"
                        | "bool"
                        | "Size"
                )
        }
        _ => false,
    }
}

fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::Malformed(why.into())
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| malformed("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn line(&mut self) -> Result<&'a [u8], Refusal> {
        let rest = &self.b[self.at..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| malformed("unterminated line"))?;
        self.at += n + 1;
        Ok(&rest[..n])
    }

    fn len(&mut self, width: usize) -> Result<usize, Refusal> {
        let mut v = [0u8; 8];
        v[..width].copy_from_slice(self.take(width)?);
        usize::try_from(u64::from_le_bytes(v)).map_err(|_| malformed("length too large"))
    }
}

/// Checks one pickle at the start of `b`; returns where it ends (after `STOP`).
pub fn check_pickle(b: &[u8]) -> Result<usize, Refusal> {
    let mut c = Cursor { b, at: 0 };
    // The strings the last two opcodes pushed, for STACK_GLOBAL; memoised strings, for the
    // GETs that push them again.
    let mut last: [Option<String>; 2] = [None, None];
    let mut memo: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    let check = |module: String, name: String| {
        let (module, name) = (module.trim().to_string(), name.trim().to_string());
        if allowed(&module, &name) {
            Ok(())
        } else {
            Err(Refusal::Global(format!("{module}.{name}")))
        }
    };
    loop {
        let op = c.take(1)?[0];
        let mut pushed: Option<String> = None;
        match op {
            b'.' => return Ok(c.at),
            // No argument.
            b'(' | b'0' | b'1' | b'2' | b'N' | b'Q' | b'R' | b'a' | b'b' | b'd' | b'}' | b'e' | b'l' | b']' | b'o'
            | b's' | b't' | b')' | b'u' | 0x81 | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | 0x8f | 0x90 | 0x91 | 0x92
            | 0x97 | 0x98 => {}
            // A newline-terminated argument.
            b'F' | b'I' | b'L' | b'P' => {
                c.line()?;
            }
            b'S' | b'V' => pushed = Some(text(c.line()?).trim_matches(['\'', '"']).to_string()),
            // Fixed-size arguments.
            b'K' | 0x80 => {
                c.take(1)?;
            }
            b'M' => {
                c.take(2)?;
            }
            b'J' => {
                c.take(4)?;
            }
            b'G' | 0x95 => {
                c.take(8)?;
            }
            // Length-prefixed data.
            b'U' | b'C' | 0x8a => {
                let n = c.len(1)?;
                let s = c.take(n)?;
                if op == b'U' {
                    pushed = Some(text(s));
                }
            }
            b'T' | b'B' | 0x8b => {
                let n = c.len(4)?;
                c.take(n)?;
            }
            b'X' => {
                let n = c.len(4)?;
                pushed = Some(text(c.take(n)?));
            }
            0x8c => {
                let n = c.len(1)?;
                pushed = Some(text(c.take(n)?));
            }
            0x8d => {
                let n = c.len(8)?;
                pushed = Some(text(c.take(n)?));
            }
            0x8e | 0x96 => {
                let n = c.len(8)?;
                c.take(n)?;
            }
            // Memo: a PUT keeps what the last opcode pushed; a GET pushes it again.
            b'p' | b'q' | b'r' | 0x94 => {
                let idx = match op {
                    b'p' => text(c.line()?).trim().parse().map_err(|_| malformed("bad PUT index"))?,
                    b'q' => c.len(1)?,
                    b'r' => c.len(4)?,
                    _ => memo.len(),
                };
                if let Some(s) = &last[1] {
                    memo.insert(idx, s.clone());
                }
                continue;
            }
            b'g' | b'h' | b'j' => {
                let idx = match op {
                    b'g' => text(c.line()?).trim().parse().map_err(|_| malformed("bad GET index"))?,
                    b'h' => c.len(1)?,
                    _ => c.len(4)?,
                };
                pushed = memo.get(&idx).cloned();
            }
            // What imports or calls by name.
            b'c' | b'i' => {
                let module = text(c.line()?);
                let name = text(c.line()?);
                check(module, name)?;
            }
            0x93 => match (last[0].take(), last[1].take()) {
                (Some(module), Some(name)) => check(module, name)?,
                _ => return Err(Refusal::Global("a STACK_GLOBAL whose name cannot be read".into())),
            },
            0x82..=0x84 => return Err(Refusal::Global("a copyreg extension code (EXT1/2/4)".into())),
            other => return Err(malformed(format!("unknown opcode 0x{other:02x} at byte {}", c.at - 1))),
        }
        last = [last[1].take(), pushed];
    }
}

/// Checks every pickle a `.pth` file holds: in the zip format each `*.pkl` entry, in the
/// legacy format the five pickles before the raw storage bytes.
pub fn check_pth<R: Read + std::io::Seek>(mut r: R) -> Result<(), Refusal> {
    let io = |e: std::io::Error| malformed(e.to_string());
    let size = r.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    r.rewind().map_err(io)?;
    let mut head = Vec::new();
    (&mut r).take(512).read_to_end(&mut head).map_err(io)?;
    r.rewind().map_err(io)?;
    if head.starts_with(b"PK\x03\x04") {
        let mut zip = zip::ZipArchive::new(r).map_err(|e| malformed(e.to_string()))?;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).map_err(|e| malformed(e.to_string()))?;
            if !f.name().ends_with(".pkl") {
                continue;
            }
            let mut b = Vec::new();
            // An entry's declared size is not trusted: at most the archive's size is read.
            (&mut f).take(size * 4 + 1024).read_to_end(&mut b).map_err(io)?;
            check_pickle(&b)?;
        }
        return Ok(());
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Err(malformed("the pre-2017 TAR .pth format is not read; re-save it with a current PyTorch"));
    }
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(io)?;
    let mut at = 0;
    for _ in 0..5 {
        if at >= bytes.len() {
            break;
        }
        at += check_pickle(&bytes[at..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dict_pickles_pass_and_code_is_named() {
        // OrderedDict + a rebuilt tensor, protocol 2, as torch.save writes (abridged).
        let ok = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03(X\x01\x00\x00\x000q\x04ctorch\nFloatStorage\nq\x05tq\x06Rq\x07s.";
        assert_eq!(check_pickle(ok), Ok(ok.len()));
        let system = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        assert_eq!(check_pickle(system), Err(Refusal::Global("posix.system".into())));
        // Protocol 4 names globals from the stack, through the memo too.
        let p4 = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.";
        assert_eq!(check_pickle(p4), Err(Refusal::Global("os.system".into())));
        let via_memo = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94h\x00h\x01\x93.";
        assert_eq!(check_pickle(via_memo), Err(Refusal::Global("builtins.eval".into())));
        let inst = b"(S'ls'\nios\nsystem\n.";
        assert_eq!(check_pickle(inst), Err(Refusal::Global("os.system".into())));
        assert!(matches!(check_pickle(b"\x80\x02\x82\x01."), Err(Refusal::Global(_))));
        assert!(matches!(check_pickle(b"\x80\x02X\xff\xff\xff\xff"), Err(Refusal::Malformed(_))));
        assert!(matches!(check_pickle(b""), Err(Refusal::Malformed(_))));
    }
}
