//! TEMPORARY stub until the generator lands.
pub struct GenerateConfig {
    pub persons: u64,
    pub claims: u64,
    pub year: i32,
    pub month: u32,
    pub seed: u64,
    pub out: std::path::PathBuf,
}
pub struct GenerateReport {
    pub persons: u64,
    pub registrations: u64,
    pub claims: u64,
    pub reversals: u64,
    pub bad_rows: u64,
}
pub fn generate(_cfg: &GenerateConfig) -> crate::Result<GenerateReport> {
    unimplemented!()
}
