import Foundation
import Yams
import VMCtlSupport

/// Finds and loads recipes from a directory of `NAME.yaml` files.
public struct RecipeStore: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// The recipe directory: `VMCTL_RECIPES`, else `./images`, else the `images/` of the
    /// checkout the vmctl binary was built in.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> RecipeStore {
        if let d = environment["VMCTL_RECIPES"], !d.isEmpty { return RecipeStore(directory: d) }
        let fm = FileManager.default
        let cwd = fm.currentDirectoryPath + "/images"
        if fm.fileExists(atPath: cwd) { return RecipeStore(directory: cwd) }
        var dir = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("images").path
            if fm.fileExists(atPath: candidate + "/debian-12.yaml") { return RecipeStore(directory: candidate) }
            dir.deleteLastPathComponent()
        }
        return RecipeStore(directory: cwd)
    }

    /// Names of the recipes present.
    public func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.filter { !Self.notRecipes.contains($0) }.sorted()
    }

    /// YAML files beside the recipes that are not recipes: the cloud image catalog.
    static let notRecipes: Set<String> = ["catalog"]

    /// The recipe called `name`, with its `base` chain applied and validated.
    /// `NAME-hw` (with no file of its own) is NAME's hardware variant.
    public func load(_ name: String) throws -> Recipe {
        var seen: [String] = []
        if name.hasSuffix(Recipe.hardwareSuffix), !FileManager.default.fileExists(atPath: "\(directory)/\(name).yaml") {
            let baseName = String(name.dropLast(Recipe.hardwareSuffix.count))
            let variant = try load(baseName, seen: &seen).hardwareVariant()
            try variant.validate()
            return variant
        }
        return try load(name, seen: &seen)
    }

    private func load(_ name: String, seen: inout [String]) throws -> Recipe {
        guard Recipe.isValidName(name) else { throw VMCtlError.usage("'\(name)' is not a valid image name") }
        guard !seen.contains(name) else {
            throw VMCtlError.usage("recipe \(name): base chain loops (\((seen + [name]).joined(separator: " → ")))")
        }
        seen.append(name)
        let path = "\(directory)/\(name).yaml"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            let known = names()
            throw VMCtlError(.notFound, message: "no recipe '\(name)' in \(directory)"
                + (known.isEmpty ? "" : " (known: \(known.joined(separator: ", ")))"))
        }
        var recipe = try Self.parse(text, file: path)
        guard recipe.name == name else {
            throw VMCtlError.usage("\(path): name is '\(recipe.name)' but the file is \(name).yaml; make them agree")
        }
        recipe = try inlineSources(recipe)
        if let baseName = recipe.base {
            recipe = recipe.layered(over: try load(baseName, seen: &seen))
        }
        try recipe.validate()
        return recipe
    }

    /// Reads `source:` files so the recipe (and its hash) carries their content.
    private func inlineSources(_ r: Recipe) throws -> Recipe {
        var r = r
        r.files = try inline(r.files, recipe: r.name)
        let hwFiles = try inline(r.hardware?.files, recipe: r.name)
        r.hardware?.files = hwFiles
        return r
    }

    private func inline(_ files: [Recipe.File]?, recipe: String) throws -> [Recipe.File]? {
        try files?.map { f in
            guard let src = f.source else { return f }
            let p = src.hasPrefix("/") ? src : "\(directory)/\(src)"
            guard let c = try? String(contentsOfFile: p, encoding: .utf8) else {
                throw VMCtlError.usage("recipe \(recipe): file \(f.path) names source \(p), which cannot be read")
            }
            return Recipe.File(path: f.path, content: c, source: nil, mode: f.mode)
        }
    }

    /// Parses recipe YAML; errors say which line.
    public static func parse(_ text: String, file: String) throws -> Recipe {
        let node: Node
        do {
            guard let n = try Yams.compose(yaml: text) else { throw VMCtlError.usage("\(file): the recipe is empty") }
            node = n
        } catch let e as YamlError {
            throw VMCtlError.usage("\(file): malformed YAML: \(describe(e))")
        }
        do {
            return try YAMLDecoder().decode(Recipe.self, from: node)
        } catch let e as DecodingError {
            throw VMCtlError.usage("\(file): \(describe(e, in: node))")
        }
    }

    private static func describe(_ e: YamlError) -> String {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
            return "line \(mark.line), column \(mark.column): \(what)"
        default:
            return "\(e)"
        }
    }

    private static func describe(_ e: DecodingError, in root: Node) -> String {
        func locate(_ path: [CodingKey]) -> String {
            var node: Node? = root
            var last = root.mark
            for key in path {
                if let i = key.intValue, let seq = node?.sequence, i < seq.count { node = seq[i] }
                else { node = node?.mapping?[key.stringValue] }
                if let m = node?.mark { last = m }
            }
            return last.map { "line \($0.line)" } ?? "somewhere"
        }
        func dotted(_ path: [CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
        }
        switch e {
        case .keyNotFound(let key, let ctx):
            return "\(locate(ctx.codingPath)): missing field '\(dotted(ctx.codingPath + [key]))'"
        case .typeMismatch(let type, let ctx), .valueNotFound(let type, let ctx):
            return "\(locate(ctx.codingPath)): '\(dotted(ctx.codingPath))' should be \(type == String.self ? "a string" : "\(type)")"
        case .dataCorrupted(let ctx):
            return "\(locate(ctx.codingPath)): '\(dotted(ctx.codingPath))': \(ctx.debugDescription)"
        @unknown default:
            return "\(e)"
        }
    }
}
