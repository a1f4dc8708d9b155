import CClang
import KprobeSupport

/// Histograms: a BPF_HISTOGRAM is log2 or linear, as the functions that fill it compute keys.
extension Rewriter {
    mutating func classifyHistograms() {
        for table in tables.values where table.kind == "histogram" {
            var log2 = false
            for function in functions {
                var touches = false
                var callsLog2 = false
                walkTree(function) { node in
                    if node.kind == CXCursor_DeclRefExpr, node.cursor.spelling == table.name, tableUSRs[node.referenced.usr] == table.name { touches = true }
                    if node.kind == CXCursor_CallExpr, node.cursor.spelling == "bpf_log2l" || node.cursor.spelling == "bpf_log2" { callsLog2 = true }
                }
                if touches && callsLog2 { log2 = true }
            }
            metadata.histograms[table.name] = log2 ? "log2" : "linear"
        }
    }
}
