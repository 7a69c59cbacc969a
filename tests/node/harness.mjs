// What every client script shares: run the scenario named on the command line with the
// JSON options read from stdin, and print its result (or what `describe` makes of an
// error it expects) as one line of JSON.
export async function run(scenarios, describe) {
  const input = await new Promise((resolve) => {
    let data = "";
    process.stdin.on("data", (chunk) => (data += chunk));
    process.stdin.on("end", () => resolve(data ? JSON.parse(data) : {}));
  });
  try {
    console.log(JSON.stringify(await scenarios[process.argv[2]](input)));
  } catch (error) {
    const described = describe(error);
    if (described === undefined) throw error;
    console.log(JSON.stringify(described));
  }
}
