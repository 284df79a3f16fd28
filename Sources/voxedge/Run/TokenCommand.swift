import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import VoxControl
import VoxEngine
import VoxSignaling

/// `voxedge token`: a signed token for the signaling listener, from the configuration's key.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Mint a signaling token (JWT) from the configured key and print it.",
        discussion: """
            Signs with signaling.token_es256_private_key_file when configured (ES256), else with \
            signaling.token_hs256_secret_file (HS256). The token carries aud (the configured \
            audience unless --audience), iat, exp (now + --ttl), sub and model. A --ttl past \
            signaling.token_max_lifetime_seconds is refused: the listener would refuse the token. \
            See docs/signaling.md.
            """
    )

    @Option(help: "The configuration file with a signaling: section.") var config: String
    @Option(help: "The token's subject (sub): who its sessions count against.") var subject: String
    @Option(help: "The model requested (model claim).") var model: String
    @Option(help: "Seconds the token lives (default 300).") var ttl: Int = 300
    @Option(help: "The audience (aud; default: the configured signaling.audience).") var audience: String?

    func run() throws {
        let engine = try RunCommand.load(config)
        guard let section = engine.signaling else { throw ValidationError("\(config): no signaling: section") }
        let signaling = SignalingConfiguration(section)
        guard !subject.isEmpty, !model.isEmpty else { throw ValidationError("--subject and --model must not be empty") }
        guard ttl >= 1, ttl <= signaling.tokenMaxLifetimeSeconds else {
            throw ValidationError("--ttl must be 1...\(signaling.tokenMaxLifetimeSeconds) (signaling.token_max_lifetime_seconds)")
        }
        let (subject, model, ttl, audience) = (subject, model, ttl, audience)
        let outcome = runBlocking { () async -> Result<String, SignalingSetupError> in
            do throws(SignalingSetupError) {
                let authority = try await TokenAuthority.load(signaling)
                return .success(try await authority.mint(subject: subject, model: model, lifetime: ttl, audience: audience))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let token): print(token)
        case .failure(let error): throw ValidationError("\(config): \(error.message)")
        }
    }
}
