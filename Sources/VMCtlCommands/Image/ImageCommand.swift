import ArgumentParser

struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build and manage OS images from recipes (images/*.yaml).",
        discussion: """
            EXAMPLES:
              vmctl image build debian-12           build, reusing cached stages
              vmctl image build debian-12 --force   rebuild every stage
              vmctl image warm debian-12 --memory 1G   warm snapshot for 1 GiB nodes
              vmctl image list --json
              vmctl image fetch u22.04 f42          published cloud images, verified (images/catalog.yaml)
              vmctl image rm debian-12
              vmctl image usb cluster-os-node     USB image + installer ISO in dist/
            """,
        subcommands: [ImageBuild.self, ImageFetch.self, ImageWarm.self, ImageUSB.self, ImageList.self, ImageRm.self])
}
