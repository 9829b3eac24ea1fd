// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SealTrail anchor registry
/// @notice Customs registers transit gateways. Each gateway's submitter address anchors the
///         RFC 9162 (SHA-256) Merkle roots of consecutive, gap-free seq ranges of the gateway's
///         signed record chain. The contract itself enforces batch order and seq continuity and
///         keeps a running chain hash, so one value commits to a gateway's whole anchor history.
/// @dev    Gas budget: an `anchor` transaction must stay under 60,000 gas, first batch included.
///         21,000 (tx) + ~1,000 (calldata) + 22,100 (the new root slot) + 2,524 (the event) are
///         fixed, so the rest is laid out for `anchor`:
///           - per-gateway anchoring state lives in a `Lane` keyed by the submitter address, so
///             the one keccak of msg.sender finds the gateway id, the state and the chain hash
///             (3 cold SLOADs), and the roots (one slot per batch, no second keccak);
///           - `state` packs lastBatch | nextSeq << 64 | revokedAt << 128 |
///             lastTrustedBatch << 192 in ONE slot: one SLOAD answers "revoked?", "which batch?"
///             and "which seq?", one SSTORE updates it (the top two fields are zero until a
///             revocation, after which anchor never writes the slot again);
///           - registration makes `state` (nextSeq = 1) and `chainHash` (chainHash_0) non-zero,
///             so every anchor, the first included, pays the non-zero -> non-zero SSTORE price;
///           - pubkey, submitter and registeredAt live in `Registration`, never read by anchor.
///         Roots of a lane sit at lane slot + ROOTS_OFFSET + batchSeq (batchSeq >= 1), the way
///         Solidity places dynamic-array items after a keccak-derived base: lanes start at
///         independent keccak positions, so ranges of 2^64 slots cannot meet in practice.
contract SealTrailAnchor {
    /// Registration data, keyed by gateway id. Read by views, written once.
    struct Registration {
        bytes32 pubkey; //     raw 32-byte Ed25519 public key of the gateway
        address submitter; //  the only address allowed to anchor for the gateway
        uint64 registeredAt; // block number; non-zero marks "registered"
    }

    /// Anchoring state, keyed by submitter address. Every slot is non-zero after registration.
    struct Lane {
        bytes32 gateway; //    slot +0: gateway id served by this submitter
        uint256 state; //      slot +1: lastBatch | nextSeq << 64 | revokedAt << 128
        //                                | lastTrustedBatch << 192
        bytes32 chainHash; //  slot +2: chainHash of the last anchored batch (chainHash_0 first)
    }

    uint256 private constant MASK64 = 0xffffffffffffffff;
    uint256 private constant ROOTS_OFFSET = 3; // slot of roots[batchSeq] = lane + 3 + batchSeq

    /// @notice The registry admin: the deploying customs administration.
    address public immutable customs;

    mapping(bytes32 => Registration) private _registrations;
    mapping(address => Lane) private _lanes;

    event GatewayRegistered(bytes32 indexed gateway, bytes32 pubkey, address indexed submitter);
    event GatewayRevoked(bytes32 indexed gateway, uint64 revokedAt, uint64 lastTrustedBatch);
    event Anchored(
        bytes32 indexed gateway,
        uint64 indexed batchSeq,
        bytes32 root,
        uint64 firstSeq,
        uint64 treeSize,
        bytes32 chainHash
    );

    error NotCustoms(address caller);
    error ZeroGateway();
    error ZeroPubkey();
    error ZeroSubmitter();
    error GatewayExists(bytes32 gateway);
    error SubmitterInUse(address submitter, bytes32 gateway);
    error UnknownGateway(bytes32 gateway);
    error AlreadyRevoked(bytes32 gateway, uint64 revokedAt);
    error NotSubmitter(address sender);
    error RevokedGateway(bytes32 gateway, uint64 revokedAt);
    error BadBatchSeq(uint64 expected, uint64 got);
    error ZeroRoot();
    error EmptyBatch();
    error SeqGap(uint64 expected, uint64 got);
    error SeqOverflow();

    constructor() {
        customs = msg.sender;
    }

    modifier onlyCustoms() {
        if (msg.sender != customs) revert NotCustoms(msg.sender);
        _;
    }

    /// @notice Register a gateway, once. `submitter` anchors for it and serves no other gateway,
    ///         ever (also after a revocation), so an address always names one gateway's history.
    function registerGateway(bytes32 gateway, bytes32 pubkey, address submitter)
        external
        onlyCustoms
    {
        if (gateway == bytes32(0)) revert ZeroGateway();
        if (pubkey == bytes32(0)) revert ZeroPubkey();
        if (submitter == address(0)) revert ZeroSubmitter();
        Registration storage reg = _registrations[gateway];
        if (reg.registeredAt != 0) revert GatewayExists(gateway);
        Lane storage lane = _lanes[submitter];
        bytes32 served = lane.gateway;
        if (served != bytes32(0)) revert SubmitterInUse(submitter, served);

        reg.pubkey = pubkey;
        reg.submitter = submitter;
        reg.registeredAt = uint64(block.number);
        lane.gateway = gateway;
        lane.state = uint256(1) << 64; // lastBatch 0, nextSeq 1, not revoked: non-zero on purpose
        lane.chainHash = keccak256(abi.encodePacked("sealtrail/v1", gateway));
        emit GatewayRegistered(gateway, pubkey, submitter);
    }

    /// @notice Stop a gateway from anchoring. Its registration and anchors stay readable.
    ///         A key is usually revoked because it leaked, and the leak is found after the
    ///         fact, so customs also says up to which batch it still trusts the gateway:
    ///         verifiers accept records of batches 1..lastTrustedBatch only. Values above the
    ///         last anchored batch mean "every batch anchored so far" (decommissioning).
    function revokeGateway(bytes32 gateway, uint64 lastTrustedBatch) external onlyCustoms {
        Registration storage reg = _registrations[gateway];
        if (reg.registeredAt == 0) revert UnknownGateway(gateway);
        Lane storage lane = _lanes[reg.submitter];
        uint256 st = lane.state;
        uint64 revokedAt = uint64(st >> 128);
        if (revokedAt != 0) revert AlreadyRevoked(gateway, revokedAt);
        uint64 lastBatch = uint64(st & MASK64);
        uint64 trusted = lastTrustedBatch < lastBatch ? lastTrustedBatch : lastBatch;
        lane.state = st | (uint256(block.number) << 128) | (uint256(trusted) << 192);
        emit GatewayRevoked(gateway, uint64(block.number), trusted);
    }

    /// @notice Anchor batch `batchSeq` of the caller's gateway: the RFC 9162 root over records
    ///         `firstSeq .. firstSeq + treeSize - 1`. Batches go 1, 2, 3, ... and together cover
    ///         record seqs 1, 2, 3, ... with no gap and no overlap.
    function anchor(uint64 batchSeq, bytes32 root, uint64 firstSeq, uint64 treeSize) external {
        Lane storage lane = _lanes[msg.sender];
        bytes32 gateway = lane.gateway;
        if (gateway == bytes32(0)) revert NotSubmitter(msg.sender);
        uint256 st = lane.state;
        if (st >> 128 != 0) revert RevokedGateway(gateway, uint64(st >> 128));
        uint256 expectedBatch = (st & MASK64) + 1;
        if (batchSeq != expectedBatch) revert BadBatchSeq(uint64(expectedBatch), batchSeq);
        if (root == bytes32(0)) revert ZeroRoot();
        if (treeSize == 0) revert EmptyBatch();
        uint256 nextSeq = st >> 64; // revokedAt is zero here, so this is exactly nextSeq
        if (firstSeq != nextSeq) revert SeqGap(uint64(nextSeq), firstSeq);
        uint256 newNext = uint256(firstSeq) + treeSize;
        if (newNext > MASK64) revert SeqOverflow();

        lane.state = uint256(batchSeq) | (newNext << 64);
        bytes32 h;
        assembly ("memory-safe") {
            // h = keccak256(abi.encodePacked(chainHash, root, firstSeq, treeSize)), in scratch
            // memory (0x00..0x50) to avoid an allocation; the free memory pointer at 0x40 is
            // saved and restored, which keeps this block memory-safe.
            let fmp := mload(0x40)
            let chainSlot := add(lane.slot, 2)
            mstore(0x00, sload(chainSlot))
            mstore(0x20, root)
            mstore(0x40, or(shl(192, firstSeq), shl(128, treeSize)))
            h := keccak256(0x00, 0x50)
            sstore(chainSlot, h)
            sstore(add(add(lane.slot, ROOTS_OFFSET), batchSeq), root)
            mstore(0x40, fmp)
        }
        emit Anchored(gateway, batchSeq, root, firstSeq, treeSize, h);
    }

    /// @notice Gateway id served by `submitter` (zero when none).
    function gatewayOf(address submitter) external view returns (bytes32) {
        return _lanes[submitter].gateway;
    }

    /// @notice Anchored root of batch `batchSeq` of `gateway` (zero when not anchored).
    function roots(bytes32 gateway, uint64 batchSeq) external view returns (bytes32 root) {
        address submitter = _registrations[gateway].submitter;
        if (submitter == address(0)) return bytes32(0);
        Lane storage lane = _lanes[submitter];
        if (batchSeq == 0 || batchSeq > (lane.state & MASK64)) return bytes32(0);
        assembly ("memory-safe") {
            root := sload(add(add(lane.slot, ROOTS_OFFSET), batchSeq))
        }
    }

    /// @notice Registration and anchoring state of `gateway` (all zero when unknown).
    function gatewayInfo(bytes32 gateway)
        external
        view
        returns (
            bytes32 pubkey,
            address submitter,
            uint64 registeredAt,
            uint64 revokedAt,
            uint64 lastBatch,
            uint64 nextSeq,
            bytes32 chainHash,
            uint64 lastTrustedBatch
        )
    {
        Registration storage reg = _registrations[gateway];
        submitter = reg.submitter;
        if (submitter == address(0)) return (0, address(0), 0, 0, 0, 0, 0, 0);
        Lane storage lane = _lanes[submitter];
        uint256 st = lane.state;
        return (
            reg.pubkey,
            submitter,
            reg.registeredAt,
            uint64((st >> 128) & MASK64),
            uint64(st & MASK64),
            uint64((st >> 64) & MASK64),
            lane.chainHash,
            uint64(st >> 192)
        );
    }
}
