fn main() {
    idlgen::build("idl");
}
