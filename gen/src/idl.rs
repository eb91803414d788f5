//! The IDL as one resolved model: files parsed by pilota-thrift-parser, includes followed,
//! typedefs and type references resolved, annotations kept (pilota-build drops them).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use pilota_thrift_parser as ast;

use crate::diag::{Diagnostic, Diagnostics, Source};

/// A typed index into one table of the model, so that a struct's id cannot index the
/// services: `idl.structs[id]` with a `StructId`, `service.methods[id]` with a `MethodId`.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident => $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);

        id!(@index $name, [$item]);
        // Vec's own `Index` shadows the slice's for `vec[id]`, so both.
        id!(@index $name, Vec<$item>);
    };
    (@index $name:ident, $table:ty) => {
        impl std::ops::Index<$name> for $table {
            type Output = <$table as std::ops::Index<usize>>::Output;
            fn index(&self, id: $name) -> &Self::Output {
                &self[id.0]
            }
        }

        impl std::ops::IndexMut<$name> for $table {
            fn index_mut(&mut self, id: $name) -> &mut Self::Output {
                &mut self[id.0]
            }
        }
    };
}

id!(/// Index into [`Idl::files`].
    FileId => File);
id!(/// Index into [`Idl::structs`].
    StructId => Struct);
id!(/// Index into [`Idl::enums`].
    EnumId => Enum);
id!(/// Index into [`Idl::services`].
    ServiceId => Service);
id!(/// Index into a [`Service`]'s `methods`.
    MethodId => Method);

/// A Thrift type with every name resolved. Typedefs are kept as a marker over their target,
/// because pilota generates a newtype for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bool,
    I8,
    I16,
    I32,
    I64,
    Double,
    String,
    Binary,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>, Box<Type>),
    Struct(StructId),
    Enum(EnumId),
    /// Name, declaring file, target.
    Typedef(String, FileId, Box<Type>),
}

impl Type {
    /// Can this type be written as one text value (a path segment, a header)?
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Type::Bool
                | Type::I8
                | Type::I16
                | Type::I32
                | Type::I64
                | Type::Double
                | Type::String
                | Type::Enum(_)
        )
    }

    /// The scalar a typedef names directly (`typedef string Sku`): its text binds to the
    /// typedef through pilota's `From<scalar>`. Not doubles (pilota may wrap them) nor enums
    /// or typedefs of typedefs (two conversions Rust cannot infer).
    pub fn typedef_scalar(&self) -> Option<&Type> {
        match self {
            Type::Typedef(_, _, t)
                if matches!(
                    **t,
                    Type::Bool | Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::String
                ) =>
            {
                Some(t)
            }
            _ => None,
        }
    }

    /// Can a value of this type be read from one text value (a scalar, or a typedef of one)?
    pub fn is_text(&self) -> bool {
        self.is_scalar() || self.typedef_scalar().is_some()
    }

    pub fn is_integer(&self) -> bool {
        matches!(self, Type::I8 | Type::I16 | Type::I32 | Type::I64)
    }
}

/// `key = "value"` annotations in source order; a key may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations(pub Vec<(String, String)>);

impl Annotations {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn from_ast(a: &ast::Annotations) -> Self {
        Self(
            a.iter()
                .map(|a| (a.key.clone(), a.value.0.clone()))
                .collect(),
        )
    }
}

#[derive(Debug)]
pub struct File {
    pub source: Source,
    /// How other files refer to this one: `base` for `base.thrift`.
    pub stem: String,
    /// `namespace rs a.b.c` as `["a", "b", "c"]`: the Rust module path of its items.
    pub namespace: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructKind {
    Struct,
    Union,
    Exception,
}

#[derive(Debug)]
pub struct Struct {
    pub file: FileId,
    pub name: String,
    pub kind: StructKind,
    pub fields: Vec<Field>,
    /// Byte offset of the name in the file, for diagnostics.
    pub offset: usize,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub id: i32,
    pub name: String,
    pub ty: Type,
    /// `required` fields are plain `T` in Rust; optional and default ones are `Option<T>`.
    pub required: bool,
    pub annotations: Annotations,
    pub offset: usize,
    pub doc: String,
}

#[derive(Debug)]
pub struct Enum {
    pub file: FileId,
    pub name: String,
    pub variants: Vec<(String, i64)>,
}

#[derive(Debug)]
pub struct Service {
    pub file: FileId,
    pub name: String,
    pub methods: Vec<Method>,
    pub annotations: Annotations,
    pub offset: usize,
}

#[derive(Debug)]
pub struct Method {
    pub name: String,
    pub args: Vec<Field>,
    /// `None` for `void`.
    pub result: Option<Type>,
    pub throws: Vec<Field>,
    pub oneway: bool,
    pub annotations: Annotations,
    pub offset: usize,
    pub doc: String,
}

/// Every file of an IDL directory, resolved.
#[derive(Debug, Default)]
pub struct Idl {
    /// The files named on the command line or found in the directory, then their includes.
    pub files: Vec<File>,
    /// The files that were asked for (not only included): these are compiled into services.
    pub roots: Vec<FileId>,
    pub structs: Vec<Struct>,
    pub enums: Vec<Enum>,
    pub services: Vec<Service>,
}

impl Idl {
    /// Parses every `*.thrift` directly in `dir` (sorted by name), and what they include.
    pub fn load_dir(dir: &Path) -> Result<Idl, Diagnostics> {
        let entries = std::fs::read_dir(dir).map_err(|e| io_diag(dir, &e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "thrift"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Diagnostics(vec![Diagnostic {
                path: dir.to_path_buf(),
                line: 1,
                col: 1,
                message: "no .thrift files in this directory".into(),
            }]));
        }
        Self::load(&paths)
    }

    /// Parses the given files and what they include.
    pub fn load(paths: &[PathBuf]) -> Result<Idl, Diagnostics> {
        let mut loader = Loader::default();
        for p in paths {
            if let Some(id) = loader.file(p, None) {
                loader.idl.roots.push(id);
            }
        }
        if !loader.diags.is_empty() {
            return Err(loader.diags);
        }
        loader.resolve();
        if loader.diags.is_empty() {
            Ok(loader.idl)
        } else {
            Err(loader.diags)
        }
    }

    pub fn source(&self, file: FileId) -> &Source {
        &self.files[file].source
    }

    /// A readable name for a type, as written in Thrift.
    pub fn type_name(&self, ty: &Type) -> String {
        match ty {
            Type::Bool => "bool".into(),
            Type::I8 => "i8".into(),
            Type::I16 => "i16".into(),
            Type::I32 => "i32".into(),
            Type::I64 => "i64".into(),
            Type::Double => "double".into(),
            Type::String => "string".into(),
            Type::Binary => "binary".into(),
            Type::List(t) => format!("list<{}>", self.type_name(t)),
            Type::Set(t) => format!("set<{}>", self.type_name(t)),
            Type::Map(k, v) => format!("map<{}, {}>", self.type_name(k), self.type_name(v)),
            Type::Struct(id) => self.structs[*id].name.clone(),
            Type::Enum(id) => self.enums[*id].name.clone(),
            Type::Typedef(name, ..) => name.clone(),
        }
    }
}

fn io_diag(path: &Path, e: &std::io::Error) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
    }])
}

/// What one parsed file declares, before resolution.
struct Parsed {
    ast: ast::File,
    /// Included files by the name they are referred to with.
    includes: HashMap<String, FileId>,
}

#[derive(Default)]
struct Loader {
    idl: Idl,
    parsed: Vec<Parsed>,
    by_path: HashMap<PathBuf, FileId>,
    diags: Diagnostics,
}

/// Where a name was declared.
#[derive(Clone, Copy)]
enum Decl {
    Struct(StructId),
    Enum(EnumId),
    Typedef(FileId, usize),
    Other,
}

impl Loader {
    /// Parses `path` (once) and, recursively, its includes. `from` is the include site.
    fn file(&mut self, path: &Path, from: Option<(FileId, usize)>) -> Option<FileId> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(&id) = self.by_path.get(&canonical) {
            return Some(id);
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let d = match from {
                    Some((f, at)) => self.idl.files[f].source.at(
                        at,
                        format!("cannot read included file {}: {e}", path.display()),
                    ),
                    None => io_diag(path, &e).0.remove(0),
                };
                self.diags.push(d);
                return None;
            }
        };
        let source = Source::new(path, text);
        let parsed = ast::FileParser::new(ast::FileSource::new(&source.text)).parse();
        let ast = match parsed {
            Ok(f) => f,
            Err(e) => {
                self.diags.push(syntax_diag(&source, &e));
                return None;
            }
        };
        let id = FileId(self.idl.files.len());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let namespace = match &ast.package {
            Some(p) => p.segments.iter().map(|s| s.to_string()).collect(),
            None => vec![stem.clone()],
        };
        self.by_path.insert(canonical, id);
        self.idl.files.push(File {
            source,
            stem,
            namespace,
        });
        self.parsed.push(Parsed {
            ast,
            includes: HashMap::new(),
        });

        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let includes: Vec<String> = self.parsed[id.0]
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Include(inc) => Some(inc.path.0.clone()),
                _ => None,
            })
            .collect();
        for inc in includes {
            let at = self.idl.files[id].source.text.find(&inc).unwrap_or(0);
            if let Some(child) = self.file(&dir.join(&inc), Some((id, at))) {
                let name = self.idl.files[child].stem.clone();
                self.parsed[id.0].includes.insert(name, child);
            }
        }
        Some(id)
    }

    /// Declares every item, then resolves every type reference.
    fn resolve(&mut self) {
        let mut scopes: Vec<HashMap<String, Decl>> = Vec::new();
        let mut typedefs: Vec<Vec<(String, ast::Type, usize)>> = Vec::new();
        for (i, p) in self.parsed.iter().enumerate() {
            let fid = FileId(i);
            let mut scope = HashMap::new();
            let mut tds = Vec::new();
            for item in &p.ast.items {
                let (name, decl) = match item {
                    ast::Item::Struct(s) => {
                        let d = declare_struct(
                            &mut self.idl,
                            fid,
                            s,
                            &s.leading_comments,
                            StructKind::Struct,
                        );
                        (s.name.as_str(), d)
                    }
                    ast::Item::Union(s) => {
                        let d = declare_struct(
                            &mut self.idl,
                            fid,
                            s,
                            &s.leading_comments,
                            StructKind::Union,
                        );
                        (s.name.as_str(), d)
                    }
                    ast::Item::Exception(s) => {
                        let d = declare_struct(
                            &mut self.idl,
                            fid,
                            s,
                            &s.leading_comments,
                            StructKind::Exception,
                        );
                        (s.name.as_str(), d)
                    }
                    ast::Item::Enum(e) => {
                        let src = &self.idl.files[fid].source;
                        // i128: an implicit value is the previous plus one, which can pass
                        // i64::MAX; Thrift enum values (and pilota's) are i32.
                        let mut next = 0i128;
                        let mut variants = Vec::new();
                        for v in &e.values {
                            let value = v.value.as_ref().map_or(next, |c| i128::from(c.0));
                            if i32::try_from(value).is_err() {
                                let at = src.member(src.item(&["enum"], &e.name), &v.name);
                                self.diags.push(src.at(
                                    at,
                                    format!(
                                        "enum value `{}.{}` = {value} does not fit in i32",
                                        e.name.as_str(),
                                        v.name.as_str()
                                    ),
                                ));
                            }
                            next = value + 1;
                            // Out of range, it is reported above and never used.
                            let value = i64::try_from(value).unwrap_or(i64::MAX);
                            variants.push((v.name.to_string(), value));
                        }
                        self.idl.enums.push(Enum {
                            file: fid,
                            name: e.name.to_string(),
                            variants,
                        });
                        (
                            e.name.as_str(),
                            Decl::Enum(EnumId(self.idl.enums.len() - 1)),
                        )
                    }
                    ast::Item::Typedef(t) => {
                        let at = self.idl.files[fid].source.item(&["typedef"], &t.alias);
                        tds.push((t.alias.to_string(), t.r#type.clone(), at));
                        (t.alias.as_str(), Decl::Typedef(fid, tds.len() - 1))
                    }
                    ast::Item::Constant(c) => (c.name.as_str(), Decl::Other),
                    ast::Item::Service(s) => (s.name.as_str(), Decl::Other),
                    _ => continue,
                };
                if scope.insert(name.to_string(), decl).is_some() {
                    let src = &self.idl.files[fid].source;
                    let at = src.item(
                        &[
                            "struct",
                            "union",
                            "exception",
                            "enum",
                            "typedef",
                            "service",
                            "const",
                        ],
                        name,
                    );
                    self.diags
                        .push(src.at(at, format!("`{name}` is declared twice in this file")));
                }
            }
            scopes.push(scope);
            typedefs.push(tds);
        }

        let resolver = Resolver {
            files: &self.idl.files,
            parsed: &self.parsed,
            scopes: &scopes,
            typedefs: &typedefs,
        };
        let mut diags = Diagnostics::default();

        // Struct fields: their types were left unresolved by declare_struct.
        let mut struct_index = 0;
        for (i, p) in self.parsed.iter().enumerate() {
            let fid = FileId(i);
            for item in &p.ast.items {
                let fields = match item {
                    ast::Item::Struct(s) => &s.fields,
                    ast::Item::Union(s) => &s.fields,
                    ast::Item::Exception(s) => &s.fields,
                    _ => continue,
                };
                for (i, f) in fields.iter().enumerate() {
                    let at = self.idl.structs[struct_index].fields[i].offset;
                    if let Some(ty) = resolver.ty(fid, &f.ty, at, &mut diags, 0) {
                        self.idl.structs[struct_index].fields[i].ty = ty;
                    }
                }
                struct_index += 1;
            }
        }

        for (i, p) in self.parsed.iter().enumerate() {
            let fid = FileId(i);
            let src = &self.idl.files[fid].source;
            for item in &p.ast.items {
                let ast::Item::Service(s) = item else {
                    continue;
                };
                let offset = src.item(&["service"], &s.name);
                let methods = s
                    .functions
                    .iter()
                    .map(|f| {
                        let at = src.member(offset, &f.name);
                        let field = |a: &ast::Field, diags: &mut Diagnostics| Field {
                            id: a.id,
                            name: a.name.to_string(),
                            ty: resolver.ty(fid, &a.ty, at, diags, 0).unwrap_or(Type::Bool),
                            required: a.attribute == ast::Attribute::Required,
                            annotations: Annotations::from_ast(&a.annotations),
                            offset: at,
                            doc: comment(&a.leading_comments),
                        };
                        Method {
                            name: f.name.to_string(),
                            args: f.arguments.iter().map(|a| field(a, &mut diags)).collect(),
                            result: match &f.result_type.0 {
                                ast::Ty::Void => None,
                                _ => resolver.ty(fid, &f.result_type, at, &mut diags, 0),
                            },
                            throws: f.throws.iter().map(|a| field(a, &mut diags)).collect(),
                            oneway: f.oneway,
                            annotations: Annotations::from_ast(&f.annotations),
                            offset: at,
                            doc: comment(&f.leading_comments),
                        }
                    })
                    .collect();
                self.idl.services.push(Service {
                    file: fid,
                    name: s.name.to_string(),
                    methods,
                    annotations: Annotations::from_ast(&s.annotations),
                    offset,
                });
            }
        }
        self.diags.0.extend(diags.0);
    }
}

fn declare_struct(
    idl: &mut Idl,
    fid: FileId,
    s: &ast::StructLike,
    doc: &str,
    kind: StructKind,
) -> Decl {
    let src = &idl.files[fid].source;
    let offset = src.item(&["struct", "union", "exception"], &s.name);
    let fields = s
        .fields
        .iter()
        .map(|f| Field {
            id: f.id,
            name: f.name.to_string(),
            ty: Type::Bool, // resolved once every file has declared its names
            required: f.attribute == ast::Attribute::Required,
            annotations: Annotations::from_ast(&f.annotations),
            offset: src.member(offset, &f.name),
            doc: comment(&f.leading_comments),
        })
        .collect();
    idl.structs.push(Struct {
        file: fid,
        name: s.name.to_string(),
        kind,
        fields,
        offset,
        doc: comment(doc),
    });
    Decl::Struct(StructId(idl.structs.len() - 1))
}

struct Resolver<'a> {
    files: &'a [File],
    parsed: &'a [Parsed],
    scopes: &'a [HashMap<String, Decl>],
    typedefs: &'a [Vec<(String, ast::Type, usize)>],
}

impl Resolver<'_> {
    /// Resolves `ty` as seen from file `fid`; `at` is where to report an unknown name.
    fn ty(
        &self,
        fid: FileId,
        ty: &ast::Type,
        at: usize,
        diags: &mut Diagnostics,
        depth: usize,
    ) -> Option<Type> {
        let mut inner = |t: &ast::Type| self.ty(fid, t, at, diags, depth);
        Some(match &ty.0 {
            ast::Ty::String => Type::String,
            ast::Ty::Binary => Type::Binary,
            ast::Ty::Bool => Type::Bool,
            ast::Ty::Byte | ast::Ty::I8 => Type::I8,
            ast::Ty::I16 => Type::I16,
            ast::Ty::I32 => Type::I32,
            ast::Ty::I64 => Type::I64,
            ast::Ty::Double => Type::Double,
            ast::Ty::Uuid => Type::String,
            ast::Ty::Void => {
                diags.push(
                    self.files[fid]
                        .source
                        .at(at, "`void` is only allowed as a method's result"),
                );
                return None;
            }
            ast::Ty::List { value, .. } => Type::List(Box::new(inner(value)?)),
            ast::Ty::Set { value, .. } => Type::Set(Box::new(inner(value)?)),
            ast::Ty::Map { key, value, .. } => {
                Type::Map(Box::new(inner(key)?), Box::new(inner(value)?))
            }
            ast::Ty::Path(path) => return self.path(fid, path, at, diags, depth),
        })
    }

    fn path(
        &self,
        fid: FileId,
        path: &ast::Path,
        at: usize,
        diags: &mut Diagnostics,
        depth: usize,
    ) -> Option<Type> {
        let segments: Vec<&str> = path.segments.iter().map(|s| s.as_str()).collect();
        let written = segments.join(".");
        let (file, name) = match segments.as_slice() {
            [name] => (Some(fid), *name),
            [include, name] => (self.parsed[fid.0].includes.get(*include).copied(), *name),
            _ => (None, ""),
        };
        let decl = file.and_then(|f| self.scopes[f.0].get(name).copied());
        let src = &self.files[fid].source;
        let found = match decl {
            Some(Decl::Struct(id)) => Type::Struct(id),
            Some(Decl::Enum(id)) => Type::Enum(id),
            Some(Decl::Typedef(f, i)) if depth < 32 => {
                let (alias, target, _) = &self.typedefs[f.0][i];
                let t = self.ty(f, target, at, diags, depth + 1)?;
                Type::Typedef(alias.clone(), f, Box::new(t))
            }
            Some(Decl::Typedef(..)) => {
                diags.push(src.at(at, format!("typedef `{written}` refers to itself")));
                return None;
            }
            Some(Decl::Other) => {
                diags.push(src.at(at, format!("`{written}` is not a type")));
                return None;
            }
            None => {
                let hint = match (segments.as_slice(), file) {
                    ([include, _], None) => format!(
                        " (no include named `{include}`: add `include \"{include}.thrift\"`)"
                    ),
                    _ => String::new(),
                };
                let at = src.word_before(at, &written);
                diags.push(src.at(at, format!("unknown type `{written}`{hint}")));
                return None;
            }
        };
        Some(found)
    }
}

/// `line:col` from pilota-thrift-parser's summary ("... at line L:C - reason"), else 1:1.
fn syntax_diag(source: &Source, err: &ast::Error) -> Diagnostic {
    let summary = match err {
        ast::Error::Syntax { summary, .. } => summary.to_string(),
        other => other.to_string(),
    };
    let position = summary.split(" at line ").nth(1).and_then(|rest| {
        let (pos, reason) = rest.split_once(" - ")?;
        let (line, col) = pos.split_once(':')?;
        Some((
            line.trim().parse().ok()?,
            col.trim().parse().ok()?,
            reason.to_string(),
        ))
    });
    let (line, col, reason) = match position {
        Some(p) => p,
        // Several errors: report the summary whole at the top; the first line has a position.
        None => {
            let first = summary.lines().nth(1).unwrap_or(&summary).trim();
            let parsed = first
                .split_once("Line ")
                .and_then(|(_, rest)| rest.split_once(" - "))
                .and_then(|(pos, reason)| {
                    let (l, c) = pos.split_once(':')?;
                    Some((l.parse().ok()?, c.parse().ok()?, reason.to_string()))
                });
            parsed.unwrap_or((1, 1, summary.clone()))
        }
    };
    Diagnostic {
        path: source.path.clone(),
        line,
        col,
        message: format!("syntax error: {}", readable_reason(&reason)),
    }
}

/// The parser's "found X expected A, B, ..." without the blanks and comment starters it
/// always lists (raw tabs and newlines included), which say nothing to a reader.
fn readable_reason(reason: &str) -> String {
    let Some((found, expected)) = reason.split_once(" expected ") else {
        return reason.to_string();
    };
    let noise = ["'/'", "'#'", "' '", "'\t'", "'\n'", "'\r'", "''"];
    let wanted: Vec<&str> = expected
        .split(", ")
        .flat_map(|p| p.split(" or "))
        .map(|p| p.trim().trim_start_matches("or ").trim())
        .filter(|p| {
            !p.is_empty()
                && !noise.contains(p)
                && !p.chars().all(|c| c == '\'' || c.is_whitespace())
        })
        .collect();
    let found = found.trim_start_matches("found ");
    match wanted.as_slice() {
        [] => format!("unexpected {found}"),
        [one] => format!("unexpected {found}, expected {one}"),
        [init @ .., last] => format!("unexpected {found}, expected {} or {last}", init.join(", ")),
    }
}

/// A leading comment block as plain text: comment markers removed, lines joined.
fn comment(raw: &str) -> String {
    raw.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("///")
                .trim_start_matches("//")
                .trim_start_matches('#')
                .trim_start_matches("/**")
                .trim_start_matches("/*")
                .trim_end_matches("*/")
                .trim_start_matches('*')
                .trim()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
